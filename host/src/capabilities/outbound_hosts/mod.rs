//! `allowed_outbound_hosts`: where a component may connect.
//!
//! Entries are `scheme://host[:port]`, as in Spin: the scheme may be `*`; the host may be
//! `*`, `*.example.com` or a name or address; the port may be a number, a range
//! `8000..8100`, `*`, or absent (then the scheme's well-known port). Anything not allowed
//! is denied, so a component with an empty list can reach nothing.
//!
//! The one place every outbound connection is checked: PostgreSQL and Redis ask
//! [`AllowedHosts::allows_url`], outbound HTTP asks [`AllowedHosts::allows`].

mod host;
mod runtime_config;
#[cfg(test)]
mod tests;

use std::fmt;
use std::ops::RangeInclusive;

/// A parsed `allowed_outbound_hosts` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedHost {
    scheme: Option<String>,
    host: HostPattern,
    ports: Option<RangeInclusive<u16>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    Any,
    Suffix(String),
    Exact(String),
}

/// An entry that cannot be parsed; names the entry.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("allowed_outbound_hosts entry `{entry}`: {reason}")]
pub struct AllowedHostError {
    entry: String,
    reason: &'static str,
}

impl AllowedHost {
    /// Parses one entry (templates already expanded).
    pub fn parse(entry: &str) -> Result<Self, AllowedHostError> {
        let fail = |reason| AllowedHostError {
            entry: entry.to_owned(),
            reason,
        };
        let (scheme, rest) = entry
            .split_once("://")
            .ok_or_else(|| fail("expected scheme://host[:port]"))?;
        if scheme.is_empty() {
            return Err(fail("missing scheme"));
        }
        let rest = rest.trim_end_matches('/');
        if rest.contains('/') {
            return Err(fail("paths are not allowed, only scheme://host[:port]"));
        }
        let (host, port) = split_host_port(rest);
        if host.is_empty() {
            return Err(fail("missing host"));
        }
        let host = match host {
            "*" => HostPattern::Any,
            _ if host.starts_with("*.") => HostPattern::Suffix(host[1..].to_ascii_lowercase()),
            _ if host.contains('*') => {
                return Err(fail("`*` is only allowed as `*` or `*.domain`"))
            }
            _ => HostPattern::Exact(host.to_ascii_lowercase()),
        };
        let scheme = (scheme != "*").then(|| scheme.to_ascii_lowercase());
        let ports = match port {
            None => {
                let default = scheme
                    .as_deref()
                    .and_then(default_port)
                    .ok_or_else(|| fail("give a port: this scheme has no well-known port"))?;
                Some(default..=default)
            }
            Some("*") => None,
            Some(port) => Some(parse_ports(port).ok_or_else(|| fail("bad port or port range"))?),
        };
        Ok(Self {
            scheme,
            host,
            ports,
        })
    }

    fn allows(&self, scheme: &str, host: &str, port: u16) -> bool {
        let scheme_ok = self.scheme.as_deref().is_none_or(|s| s == scheme);
        let host = host.to_ascii_lowercase();
        let host_ok = match &self.host {
            HostPattern::Any => true,
            HostPattern::Suffix(suffix) => host.ends_with(suffix.as_str()),
            HostPattern::Exact(exact) => *exact == host,
        };
        let port_ok = self
            .ports
            .as_ref()
            .is_none_or(|ports| ports.contains(&port));
        scheme_ok && host_ok && port_ok
    }
}

/// The whole list for one component.
#[derive(Debug, Clone, Default)]
pub struct AllowedHosts {
    entries: Vec<AllowedHost>,
}

impl AllowedHosts {
    /// Parses every entry.
    pub fn parse<'a>(entries: impl IntoIterator<Item = &'a str>) -> Result<Self, AllowedHostError> {
        let entries = entries
            .into_iter()
            .map(AllowedHost::parse)
            .collect::<Result<_, _>>()?;
        Ok(Self { entries })
    }

    /// Whether `url` (e.g. `postgres://user:pw@db:5432/app`) may be connected to.
    pub fn allows_url(&self, url: &str) -> bool {
        let Ok(parsed) = url::Url::parse(url) else {
            return false;
        };
        let scheme = parsed.scheme().to_ascii_lowercase();
        let Some(host) = parsed.host_str() else {
            return false;
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let Some(port) = parsed.port().or_else(|| default_port(&scheme)) else {
            return false;
        };
        self.allows(&scheme, host, port)
    }

    /// Whether `scheme://host:port` may be connected to.
    pub fn allows(&self, scheme: &str, host: &str, port: u16) -> bool {
        self.entries
            .iter()
            .any(|entry| entry.allows(scheme, host, port))
    }
}

impl fmt::Display for AllowedHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self)
    }
}

/// Well-known ports of the schemes Spin components use.
pub fn default_port(scheme: &str) -> Option<u16> {
    Some(match scheme {
        "http" => 80,
        "https" => 443,
        "postgres" | "postgresql" => 5432,
        "redis" => 6379,
        "rediss" => 6380,
        "mysql" => 3306,
        "mqtt" => 1883,
        "mqtts" => 8883,
        _ => return None,
    })
}

fn split_host_port(rest: &str) -> (&str, Option<&str>) {
    if let Some(stripped) = rest.strip_prefix('[') {
        // [ipv6]:port
        return match stripped.split_once(']') {
            Some((host, tail)) => (host, tail.strip_prefix(':')),
            None => (rest, None),
        };
    }
    match rest.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (rest, None),
    }
}

fn parse_ports(text: &str) -> Option<RangeInclusive<u16>> {
    match text.split_once("..") {
        Some((low, high)) => {
            let (low, high) = (low.parse().ok()?, high.parse().ok()?);
            (low <= high).then_some(low..=high)
        }
        None => text.parse().ok().map(|port| port..=port),
    }
}
