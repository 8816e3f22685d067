//! Structured logs: one JSON object per line on stdout, which the host prefixes with the
//! component id and a platform (Spin, SpinKube) collects as container output.
//!
//! Only the fields a caller passes are written, and free text from hosts or libraries goes
//! through [`sanitize`] first so a connection string's password cannot end up in a log.

/// Writes `{"ts":..,"level":..,"msg":..,<fields>}` as one line.
pub fn event(level: &str, msg: &str, fields: &[(&str, &str)]) {
    event_with_numbers(level, msg, fields, &[]);
}

/// Like [`event`], but the fields named in `numbers` are written as JSON numbers when
/// they parse as such (status codes, latencies).
pub fn event_with_numbers(level: &str, msg: &str, fields: &[(&str, &str)], numbers: &[&str]) {
    println!("{}", render(&timestamp(), level, msg, fields, numbers));
}

fn timestamp() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn render(ts: &str, level: &str, msg: &str, fields: &[(&str, &str)], numbers: &[&str]) -> String {
    let mut obj = serde_json::Map::new();
    obj.insert("ts".into(), ts.into());
    obj.insert("level".into(), level.into());
    obj.insert("msg".into(), msg.into());
    for (name, value) in fields {
        let v = if numbers.contains(name) {
            // Integers stay integers (`"status":200`), others become floats.
            value
                .parse::<i64>()
                .ok()
                .map(serde_json::Number::from)
                .or_else(|| {
                    value
                        .parse::<f64>()
                        .ok()
                        .and_then(serde_json::Number::from_f64)
                })
                .map(serde_json::Value::Number)
                .unwrap_or_else(|| (*value).into())
        } else {
            (*value).into()
        };
        obj.insert((*name).to_owned(), v);
    }
    serde_json::Value::Object(obj).to_string()
}

/// Removes credentials from URLs (`scheme://user:secret@host` → `scheme://***@host`),
/// `password=...` pairs, and line breaks, and caps the length: for host/library messages
/// that might echo a connection string.
pub fn sanitize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find("://") {
        let (before, after) = rest.split_at(pos + 3);
        out.push_str(before);
        // The authority ends at the first '/', whitespace or quote.
        let end = after
            .find(|c: char| c == '/' || c.is_whitespace() || c == '"' || c == '\'')
            .unwrap_or(after.len());
        let authority = &after[..end];
        match authority.rfind('@') {
            Some(at) => {
                out.push_str("***");
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    // key=value forms (libpq-style connection strings).
    let mut cleaned: Vec<String> = Vec::new();
    for word in out.split(' ') {
        let lower = word.to_ascii_lowercase();
        if lower.starts_with("password=") || lower.starts_with("pass=") {
            cleaned.push("password=***".to_owned());
        } else {
            cleaned.push(word.to_owned());
        }
    }
    let joined: String = cleaned
        .join(" ")
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    joined.chars().take(300).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_one_json_line_with_numbers() {
        let line = render(
            "2026-01-01T00:00:00.000Z",
            "info",
            "request",
            &[
                ("status", "200"),
                ("route", "/todos"),
                ("latency_ms", "1.5"),
            ],
            &["status", "latency_ms"],
        );
        assert!(!line.contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["status"], 200);
        assert!(line.contains(r#""status":200,"#), "{line}");
        assert_eq!(v["latency_ms"], 1.5);
        assert_eq!(v["route"], "/todos");
    }

    #[test]
    fn sanitize_strips_credentials() {
        let s = sanitize("connect postgres://todo:hunter2@127.0.0.1:55432/todo failed");
        assert!(!s.contains("hunter2"), "{s}");
        assert!(s.contains("***@127.0.0.1:55432"), "{s}");
        let s = sanitize("host=db user=todo password=hunter2 dbname=todo");
        assert!(!s.contains("hunter2"), "{s}");
        let s = sanitize("redis://:pw@127.0.0.1:56379\nnext line");
        assert!(!s.contains("pw@") && !s.contains('\n'), "{s}");
        assert_eq!(sanitize(&"x".repeat(1000)).len(), 300);
    }
}
