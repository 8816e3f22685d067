//! Route matching for the HTTP trigger, with Spin's semantics.
//!
//! A leaf module, like Spin's `routes` crate: the manifest parses routes with it at
//! load time (so a bad route is an error with its line), the HTTP trigger and
//! `edge-host routes` match with it.
//!
//! A route is a path of segments. A segment is literal (`todos`), a named parameter
//! (`:id`, matches exactly one segment) or, only as the last segment, the wildcard `...`
//! (matches zero or more segments). When several routes match, the most specific wins:
//! segments are compared left to right, a literal beats a parameter and a parameter beats
//! the wildcard; at equal footing the route with more segments wins. An empty segment
//! (trailing or doubled slash) in the request path is ignored, so `/todos/` matches
//! `/todos`, as in Spin.

use std::cmp::Ordering;
use std::fmt;

/// A parsed route such as `/todos/:id` or `/health/...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutePattern {
    raw: String,
    segments: Vec<Segment>,
    wildcard: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param(String),
}

/// A route that cannot be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RouteError {
    #[error("route `{0}` must start with `/`")]
    NoLeadingSlash(String),
    #[error("route `{0}`: `...` is only allowed as the last segment")]
    WildcardNotLast(String),
    #[error("route `{0}`: a parameter needs a name after `:`")]
    EmptyParam(String),
    #[error("routes `{0}` and `{1}` match exactly the same paths")]
    Duplicate(String, String),
}

impl RoutePattern {
    /// Parses a route as written in `spin.toml`.
    pub fn parse(raw: &str) -> Result<Self, RouteError> {
        if !raw.starts_with('/') {
            return Err(RouteError::NoLeadingSlash(raw.to_owned()));
        }
        let parts: Vec<&str> = raw.split('/').filter(|part| !part.is_empty()).collect();
        let mut segments = Vec::new();
        let mut wildcard = false;
        for (index, part) in parts.iter().enumerate() {
            if *part == "..." {
                if index + 1 != parts.len() {
                    return Err(RouteError::WildcardNotLast(raw.to_owned()));
                }
                wildcard = true;
            } else if let Some(name) = part.strip_prefix(':') {
                if name.is_empty() {
                    return Err(RouteError::EmptyParam(raw.to_owned()));
                }
                segments.push(Segment::Param(name.to_owned()));
            } else {
                segments.push(Segment::Literal((*part).to_owned()));
            }
        }
        Ok(Self {
            raw: raw.to_owned(),
            segments,
            wildcard,
        })
    }

    /// The route as written in the manifest (`spin-raw-component-route`).
    pub fn raw(&self) -> &str {
        &self.raw
    }

    /// The route without a trailing wildcard (`spin-component-route`): `""` for `/...`.
    pub fn component_route(&self) -> String {
        self.segments
            .iter()
            .map(|segment| match segment {
                Segment::Literal(text) => format!("/{text}"),
                Segment::Param(name) => format!("/:{name}"),
            })
            .collect()
    }

    /// Matches a request path (its non-empty segments, and whether it ends with `/`);
    /// `None` if it does not match.
    fn matches(&self, path_segments: &[&str], trailing_slash: bool) -> Option<RouteMatch> {
        if path_segments.len() < self.segments.len()
            || (!self.wildcard && path_segments.len() != self.segments.len())
        {
            return None;
        }
        let mut params = Vec::new();
        for (segment, actual) in self.segments.iter().zip(path_segments) {
            match segment {
                Segment::Literal(text) if text == actual => {}
                Segment::Literal(_) => return None,
                Segment::Param(name) => params.push((name.clone(), (*actual).to_owned())),
            }
        }
        let rest = &path_segments[self.segments.len()..];
        let mut path_info: String = rest.iter().map(|part| format!("/{part}")).collect();
        // Spin keeps a trailing slash in a wildcard's path info (`/foo/...`: `/foo/` gives
        // `/`, `/foo/bar/` gives `/bar/`; spin-http's `RouteMatch::trailing_wildcard`); an
        // exact route's path info is always empty.
        if self.wildcard && trailing_slash {
            path_info.push('/');
        }
        Some(RouteMatch { params, path_info })
    }

    /// Orders by specificity: `Greater` means `self` is more specific than `other`.
    fn specificity(&self, other: &Self) -> Ordering {
        for (mine, theirs) in self.segments.iter().zip(&other.segments) {
            let rank = |segment: &Segment| match segment {
                Segment::Literal(_) => 1,
                Segment::Param(_) => 0,
            };
            match rank(mine).cmp(&rank(theirs)) {
                Ordering::Equal => {}
                unequal => return unequal,
            }
        }
        match self.segments.len().cmp(&other.segments.len()) {
            Ordering::Equal => other.wildcard.cmp(&self.wildcard),
            unequal => unequal,
        }
    }

    /// Whether two routes match exactly the same set of paths.
    fn same_shape(&self, other: &Self) -> bool {
        self.wildcard == other.wildcard
            && self.segments.len() == other.segments.len()
            && self
                .segments
                .iter()
                .zip(&other.segments)
                .all(|pair| match pair {
                    (Segment::Literal(a), Segment::Literal(b)) => a == b,
                    (Segment::Param(_), Segment::Param(_)) => true,
                    _ => false,
                })
    }
}

impl fmt::Display for RoutePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

/// What a successful match tells the component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteMatch {
    /// Named parameters (`spin-path-match-<name>`), in route order.
    pub params: Vec<(String, String)>,
    /// The path after the matched route (`spin-path-info`), `""` for an exact match; a
    /// trailing slash is kept, as Spin keeps it.
    pub path_info: String,
}

/// The routing table: routes with a target each, sorted most specific first.
#[derive(Debug, Clone)]
pub struct Router<T> {
    routes: Vec<(RoutePattern, T)>,
}

impl<T> Router<T> {
    /// Builds the table, rejecting two routes that would match the same paths.
    pub fn new(routes: Vec<(RoutePattern, T)>) -> Result<Self, RouteError> {
        for (index, (route, _)) in routes.iter().enumerate() {
            if let Some((twin, _)) = routes[index + 1..]
                .iter()
                .find(|(other, _)| other.same_shape(route))
            {
                return Err(RouteError::Duplicate(route.raw.clone(), twin.raw.clone()));
            }
        }
        let mut routes = routes;
        routes.sort_by(|(a, _), (b, _)| b.specificity(a));
        Ok(Self { routes })
    }

    /// The most specific route matching `path` (no query string), if any.
    pub fn route(&self, path: &str) -> Option<(&RoutePattern, &T, RouteMatch)> {
        let segments: Vec<&str> = path.split('/').filter(|part| !part.is_empty()).collect();
        let trailing_slash = path.ends_with('/');
        self.routes.iter().find_map(|(pattern, target)| {
            pattern
                .matches(&segments, trailing_slash)
                .map(|found| (pattern, target, found))
        })
    }

    /// All routes with their targets, most specific first.
    pub fn routes(&self) -> impl Iterator<Item = &(RoutePattern, T)> {
        self.routes.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(routes: &[&str]) -> Router<String> {
        Router::new(
            routes
                .iter()
                .map(|raw| (RoutePattern::parse(raw).unwrap(), (*raw).to_owned()))
                .collect(),
        )
        .unwrap()
    }

    /// Request path, route expected to win, its parameters, and the path info.
    type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], &'a str);

    #[test]
    fn table_of_cases() {
        let table = router(&[
            "/...",
            "/health",
            "/health/...",
            "/todos",
            "/todos/:id",
            "/todos/:id/...",
            "/todos/archived",
            "/users/:user/todos/:id",
        ]);
        let cases: &[Case] = &[
            ("/", "/...", &[], "/"),
            ("/anything/else", "/...", &[], "/anything/else"),
            ("/health", "/health", &[], ""),
            ("/health/", "/health", &[], ""),
            ("/health/ready", "/health/...", &[], "/ready"),
            ("/health/ready/", "/health/...", &[], "/ready/"),
            ("/todos", "/todos", &[], ""),
            ("/todos/", "/todos", &[], ""),
            ("/todos/42", "/todos/:id", &[("id", "42")], ""),
            ("/todos/archived", "/todos/archived", &[], ""),
            (
                "/todos/42/tags/x",
                "/todos/:id/...",
                &[("id", "42")],
                "/tags/x",
            ),
            (
                "/users/ann/todos/7",
                "/users/:user/todos/:id",
                &[("user", "ann"), ("id", "7")],
                "",
            ),
            ("/users/ann", "/...", &[], "/users/ann"),
        ];
        for (path, expected_route, params, path_info) in cases {
            let (pattern, _, found) = table.route(path).expect(path);
            assert_eq!(pattern.raw(), *expected_route, "path {path}");
            let expected: Vec<(String, String)> = params
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            assert_eq!(found.params, expected, "path {path}");
            assert_eq!(found.path_info, *path_info, "path {path}");
        }
    }

    #[test]
    fn no_match_is_none() {
        let table = router(&["/health", "/todos/:id"]);
        assert!(table.route("/nope").is_none());
        assert!(table.route("/todos").is_none());
        assert!(table.route("/todos/1/2").is_none());
    }

    #[test]
    fn wildcard_matches_its_own_root() {
        let table = router(&["/api/..."]);
        let (_, _, found) = table.route("/api").unwrap();
        assert_eq!(found.path_info, "");
        let (_, _, found) = table.route("/api/").unwrap();
        assert_eq!(found.path_info, "/", "Spin keeps the trailing slash");
    }

    #[test]
    fn component_route_strips_the_wildcard() {
        assert_eq!(RoutePattern::parse("/...").unwrap().component_route(), "");
        assert_eq!(
            RoutePattern::parse("/todos/:id/...")
                .unwrap()
                .component_route(),
            "/todos/:id"
        );
    }

    #[test]
    fn bad_routes_are_rejected() {
        assert!(matches!(
            RoutePattern::parse("todos"),
            Err(RouteError::NoLeadingSlash(_))
        ));
        assert!(matches!(
            RoutePattern::parse("/a/.../b"),
            Err(RouteError::WildcardNotLast(_))
        ));
        assert!(matches!(
            RoutePattern::parse("/a/:"),
            Err(RouteError::EmptyParam(_))
        ));
        let duplicate = Router::new(vec![
            (RoutePattern::parse("/todos/:id").unwrap(), 1),
            (RoutePattern::parse("/todos/:key").unwrap(), 2),
        ]);
        assert!(matches!(duplicate, Err(RouteError::Duplicate(_, _))));
    }
}
