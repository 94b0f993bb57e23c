//! Grants: which actions a principal may take on which names. A grant is a
//! typed name pattern (`topic:orders.*`, `queue:email-*`) under one of three
//! actions; `admin` implies `publish` and `consume` on its patterns. Pure
//! data and matching, no IO.

use std::fmt;

/// Longest pattern after its kind prefix (a name is at most 80 characters;
/// stars make a pattern longer than the names it matches only by a little).
pub const MAX_PATTERN_LEN: usize = 200;

/// What a request wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Publish to a topic, send to a queue.
    Publish,
    /// Receive, ack, nack, change visibility, push-subscribe.
    Consume,
    /// Create, update, delete, purge, redrive, (un)subscribe.
    Admin,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Publish => "publish",
            Self::Consume => "consume",
            Self::Admin => "admin",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The two namespaces a pattern can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Topic,
    Queue,
}

impl Kind {
    fn prefix(self) -> &'static str {
        match self {
            Self::Topic => "topic",
            Self::Queue => "queue",
        }
    }
}

/// A named resource a request acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resource<'a> {
    pub kind: Kind,
    pub name: &'a str,
}

impl<'a> Resource<'a> {
    pub fn topic(name: &'a str) -> Self {
        Self {
            kind: Kind::Topic,
            name,
        }
    }

    pub fn queue(name: &'a str) -> Self {
        Self {
            kind: Kind::Queue,
            name,
        }
    }
}

impl fmt::Display for Resource<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind.prefix(), self.name)
    }
}

/// Why a pattern was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("pattern {0:?} must start with \"topic:\" or \"queue:\"")]
    NoKind(String),
    #[error("pattern {0:?} has nothing after its kind")]
    Empty(String),
    #[error("pattern {0:?} is longer than {MAX_PATTERN_LEN} characters")]
    TooLong(String),
    #[error("pattern {0:?} may hold only A-Z a-z 0-9 _ . - and *")]
    BadCharacter(String),
}

/// A typed glob: `*` matches any run of characters (none included); every
/// other character matches itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    kind: Kind,
    glob: String,
}

impl Pattern {
    /// Parses `topic:GLOB` or `queue:GLOB`.
    pub fn parse(text: &str) -> Result<Self, PatternError> {
        let (kind, glob) = if let Some(g) = text.strip_prefix("topic:") {
            (Kind::Topic, g)
        } else if let Some(g) = text.strip_prefix("queue:") {
            (Kind::Queue, g)
        } else {
            return Err(PatternError::NoKind(text.to_string()));
        };
        if glob.is_empty() {
            return Err(PatternError::Empty(text.to_string()));
        }
        if glob.len() > MAX_PATTERN_LEN {
            return Err(PatternError::TooLong(text.to_string()));
        }
        let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '*');
        if !glob.chars().all(ok) {
            return Err(PatternError::BadCharacter(text.to_string()));
        }
        Ok(Self {
            kind,
            glob: glob.to_string(),
        })
    }

    pub fn matches(&self, r: Resource<'_>) -> bool {
        self.kind == r.kind && glob_matches(self.glob.as_bytes(), r.name.as_bytes())
    }

    /// Whether this pattern matches every name of its kind.
    pub fn is_everything(&self) -> bool {
        self.glob.bytes().all(|b| b == b'*')
    }

    /// The namespace it names.
    pub fn kind(&self) -> Kind {
        self.kind
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind.prefix(), self.glob)
    }
}

/// Wildcard match with backtracking to the last star only: O(len(glob) ×
/// len(name)) at worst, linear for the usual one or two stars.
fn glob_matches(glob: &[u8], name: &[u8]) -> bool {
    let (mut g, mut n) = (0usize, 0usize);
    // Where the last star was, and the name position it currently stands for.
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        if g < glob.len() && glob[g] == b'*' {
            star = Some((g, n));
            g += 1;
        } else if g < glob.len() && glob[g] == name[n] {
            g += 1;
            n += 1;
        } else if let Some((sg, sn)) = star {
            // Let the star swallow one more character and retry.
            g = sg + 1;
            n = sn + 1;
            star = Some((sg, sn + 1));
        } else {
            return false;
        }
    }
    glob[g..].iter().all(|b| *b == b'*')
}

/// The raw lists as a user writes them (config or JWT claim).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantLists {
    #[serde(default)]
    pub publish: Vec<String>,
    #[serde(default)]
    pub consume: Vec<String>,
    #[serde(default)]
    pub admin: Vec<String>,
}

/// What one principal may do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    /// Everything (the anonymous principal of a server without keys).
    all: bool,
    publish: Vec<Pattern>,
    consume: Vec<Pattern>,
    admin: Vec<Pattern>,
}

impl Grants {
    /// Every action on every name.
    pub fn everything() -> Self {
        Self {
            all: true,
            ..Self::default()
        }
    }

    /// Parses the lists; the first bad pattern is the error.
    pub fn parse(lists: &GrantLists) -> Result<Self, PatternError> {
        let parse = |v: &[String]| -> Result<Vec<Pattern>, PatternError> {
            v.iter().map(|p| Pattern::parse(p)).collect()
        };
        Ok(Self {
            all: false,
            publish: parse(&lists.publish)?,
            consume: parse(&lists.consume)?,
            admin: parse(&lists.admin)?,
        })
    }

    fn patterns(&self, action: Action) -> &[Pattern] {
        match action {
            Action::Publish => &self.publish,
            Action::Consume => &self.consume,
            Action::Admin => &self.admin,
        }
    }

    /// Whether `action` on `r` is granted (admin implies the other two).
    pub fn allows(&self, action: Action, r: Resource<'_>) -> bool {
        if self.all {
            return true;
        }
        let hit = |ps: &[Pattern]| ps.iter().any(|p| p.matches(r));
        hit(&self.admin) || (action != Action::Admin && hit(self.patterns(action)))
    }

    /// Whether any action on `r` is granted (describe, lists).
    pub fn any_on(&self, r: Resource<'_>) -> bool {
        [Action::Publish, Action::Consume, Action::Admin]
            .into_iter()
            .any(|a| self.allows(a, r))
    }

    /// Whether there is at least one admin grant (the live page).
    pub fn any_admin(&self) -> bool {
        self.all || !self.admin.is_empty()
    }

    /// Whether admin covers every topic and every queue (`/metrics`, which
    /// names them all).
    pub fn admin_everywhere(&self) -> bool {
        let covers = |k: Kind| {
            self.admin
                .iter()
                .any(|p| p.kind() == k && p.is_everything())
        };
        self.all || (covers(Kind::Topic) && covers(Kind::Queue))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Pattern {
        Pattern::parse(s).expect("valid pattern")
    }

    #[test]
    fn globs_match_any_run_of_characters() {
        let orders = p("topic:orders.*");
        assert!(orders.matches(Resource::topic("orders.eu")));
        assert!(orders.matches(Resource::topic("orders.")));
        assert!(orders.matches(Resource::topic("orders.eu.paid")));
        assert!(!orders.matches(Resource::topic("orders")));
        assert!(!orders.matches(Resource::topic("xorders.eu")));
        assert!(p("queue:*").matches(Resource::queue("anything")));
        assert!(p("queue:a*b*c").matches(Resource::queue("aXXbYYc")));
        assert!(p("queue:a*b*c").matches(Resource::queue("abc")));
        assert!(!p("queue:a*b*c").matches(Resource::queue("abcd")));
        assert!(p("queue:*-dlq").matches(Resource::queue("email-dlq")));
        assert!(!p("queue:*-dlq").matches(Resource::queue("email-dlq2")));
        assert!(p("queue:jobs").matches(Resource::queue("jobs")));
        assert!(!p("queue:jobs").matches(Resource::queue("jobs2")));
        assert!(p("queue:**a").matches(Resource::queue("banana")));
    }

    #[test]
    fn patterns_are_typed() {
        assert!(!p("topic:*").matches(Resource::queue("orders")));
        assert!(!p("queue:orders").matches(Resource::topic("orders")));
        assert_eq!(p("topic:orders.*").to_string(), "topic:orders.*");
    }

    #[test]
    fn bad_patterns_are_refused() {
        assert!(matches!(
            Pattern::parse("orders.*"),
            Err(PatternError::NoKind(_))
        ));
        assert!(matches!(
            Pattern::parse("Topic:x"),
            Err(PatternError::NoKind(_))
        ));
        assert!(matches!(
            Pattern::parse("queue:"),
            Err(PatternError::Empty(_))
        ));
        assert!(matches!(
            Pattern::parse("queue:a b"),
            Err(PatternError::BadCharacter(_))
        ));
        assert!(matches!(
            Pattern::parse("queue:a?"),
            Err(PatternError::BadCharacter(_))
        ));
        let long = format!("queue:{}", "a".repeat(MAX_PATTERN_LEN + 1));
        assert!(matches!(
            Pattern::parse(&long),
            Err(PatternError::TooLong(_))
        ));
    }

    #[test]
    fn admin_implies_publish_and_consume_but_not_the_reverse() {
        let g = Grants::parse(&GrantLists {
            publish: vec!["topic:orders.*".into(), "queue:jobs".into()],
            consume: vec!["queue:email-*".into()],
            admin: vec!["queue:email-*".into()],
        })
        .expect("valid grants");
        assert!(g.allows(Action::Publish, Resource::topic("orders.eu")));
        assert!(!g.allows(Action::Consume, Resource::topic("orders.eu")));
        assert!(!g.allows(Action::Admin, Resource::topic("orders.eu")));
        assert!(g.allows(Action::Publish, Resource::queue("jobs")));
        assert!(!g.allows(Action::Consume, Resource::queue("jobs")));
        // Admin on email-* covers all three there.
        for a in [Action::Publish, Action::Consume, Action::Admin] {
            assert!(g.allows(a, Resource::queue("email-1")), "{a}");
        }
        assert!(g.any_on(Resource::queue("jobs")));
        assert!(!g.any_on(Resource::queue("other")));
        assert!(g.any_admin());
        assert!(!g.admin_everywhere());
    }

    #[test]
    fn everything_and_nothing() {
        let all = Grants::everything();
        assert!(all.allows(Action::Admin, Resource::queue("x")));
        assert!(all.admin_everywhere());
        let none = Grants::default();
        assert!(!none.any_on(Resource::topic("x")));
        assert!(!none.any_admin());
        let wide = Grants::parse(&GrantLists {
            admin: vec!["topic:*".into(), "queue:*".into()],
            ..GrantLists::default()
        })
        .expect("valid grants");
        assert!(wide.admin_everywhere());
        let half = Grants::parse(&GrantLists {
            admin: vec!["topic:*".into()],
            ..GrantLists::default()
        })
        .expect("valid grants");
        assert!(!half.admin_everywhere());
    }

    #[test]
    fn a_bad_pattern_in_any_list_refuses_the_grants() {
        let e = Grants::parse(&GrantLists {
            consume: vec!["queue:ok".into(), "nope".into()],
            ..GrantLists::default()
        });
        assert_eq!(e, Err(PatternError::NoKind("nope".into())));
    }
}
