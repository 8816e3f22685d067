//! `{{ name }}` templates, as Spin's manifest uses them in component variables,
//! `allowed_outbound_hosts` and trigger settings.
//!
//! A leaf module: the manifest checks templates when it parses, the variables module
//! expands them, and neither needs the other for it (Spin keeps these in its own small
//! `expressions` crate for the same reason).

/// Spin variable names: `[a-z][a-z0-9_]*`.
pub fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// A string with `{{ name }}` placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Variable(String),
}

/// A template that cannot be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TemplateError {
    #[error("unclosed `{{{{` in template")]
    Unclosed,
    #[error("`{0}` is not a variable name (lower-case letters, digits and `_`)")]
    BadName(String),
}

impl Template {
    /// Parses `text`; whitespace inside the braces is ignored.
    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                parts.push(Part::Literal(rest[..start].to_owned()));
            }
            let after = &rest[start + 2..];
            let end = after.find("}}").ok_or(TemplateError::Unclosed)?;
            let name = after[..end].trim();
            if !is_variable_name(name) {
                return Err(TemplateError::BadName(name.to_owned()));
            }
            parts.push(Part::Variable(name.to_owned()));
            rest = &after[end + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_owned()));
        }
        Ok(Self { parts })
    }

    /// The variable names this template refers to.
    pub fn references(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|part| match part {
            Part::Variable(name) => Some(name.as_str()),
            Part::Literal(_) => None,
        })
    }

    /// Expands the template, asking `lookup` for each variable's value; the first
    /// lookup error is returned. The variables module supplies the application's values.
    pub fn render_with<'v, E>(
        &self,
        mut lookup: impl FnMut(&str) -> Result<&'v str, E>,
    ) -> Result<String, E> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::Variable(name) => out.push_str(lookup(name)?),
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_errors() {
        assert_eq!(Template::parse("{{ a"), Err(TemplateError::Unclosed));
        assert_eq!(
            Template::parse("{{ A-b }}"),
            Err(TemplateError::BadName("A-b".into()))
        );
        let plain = Template::parse("no placeholders").unwrap();
        assert_eq!(plain.references().count(), 0);
    }

    #[test]
    fn render_with_stops_at_the_first_missing_value() {
        let template = Template::parse("{{ a }}-{{ b }}").unwrap();
        let got = template.render_with(|name| {
            if name == "a" {
                Ok("1")
            } else {
                Err(name.to_owned())
            }
        });
        assert_eq!(got, Err("b".to_owned()));
    }

    #[test]
    fn variable_names() {
        assert!(is_variable_name("db_url2"));
        for bad in ["", "Db", "2x", "a-b", "_a"] {
            assert!(!is_variable_name(bad), "{bad}");
        }
    }
}
