//! Topic subscription rules: true/false filters, correlation filters and a small SQL-like filter
//! language (`=`, `<>`, comparisons, `IN`, `AND`/`OR`/`NOT`, `EXISTS(p)`, `IS [NOT] NULL`) over
//! application properties and `sys.*` system properties, with SQL's three-valued logic.

use super::message::{Message, PropValue};
use std::collections::BTreeMap;

/// A rule filter.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    True,
    False,
    Correlation(CorrelationFilter),
    Sql { text: String, expr: Expr },
}

/// Every property that is set must match exactly.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CorrelationFilter {
    pub correlation_id: Option<String>,
    pub message_id: Option<String>,
    pub to: Option<String>,
    pub reply_to: Option<String>,
    pub label: Option<String>,
    pub session_id: Option<String>,
    pub reply_to_session_id: Option<String>,
    pub content_type: Option<String>,
    /// Application properties (names compare case-insensitively, values by type-aware equality).
    pub properties: BTreeMap<String, PropValue>,
}

/// A named rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub name: String,
    pub filter: Filter,
}

fn app_prop<'a>(m: &'a Message, name: &str) -> Option<&'a PropValue> {
    m.app_props.get(name).or_else(|| {
        m.app_props
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}

fn prop_eq(a: &PropValue, b: &PropValue) -> bool {
    match (a, b) {
        (PropValue::Str(x), PropValue::Str(y)) => x == y,
        (PropValue::Bool(x), PropValue::Bool(y)) => x == y,
        (x, y) => match (num(x), num(y)) {
            (Some(p), Some(q)) => p == q,
            _ => false,
        },
    }
}

fn num(v: &PropValue) -> Option<f64> {
    match v {
        PropValue::Int(i) => Some(*i as f64),
        PropValue::Float(f) => Some(*f),
        _ => None,
    }
}

impl CorrelationFilter {
    pub fn matches(&self, m: &Message) -> bool {
        let p = &m.props;
        let checks = [
            (&self.correlation_id, p.correlation_id.as_deref()),
            (&self.message_id, Some(m.message_id.as_str())),
            (&self.to, p.to.as_deref()),
            (&self.reply_to, p.reply_to.as_deref()),
            (&self.label, p.label.as_deref()),
            (&self.session_id, p.session_id.as_deref()),
            (&self.reply_to_session_id, p.reply_to_session_id.as_deref()),
            (&self.content_type, m.content_type.as_deref()),
        ];
        for (want, have) in checks {
            if let Some(w) = want
                && have != Some(w.as_str())
            {
                return false;
            }
        }
        self.properties
            .iter()
            .all(|(k, v)| app_prop(m, k).is_some_and(|have| prop_eq(have, v)))
    }
}

impl Filter {
    pub fn matches(&self, m: &Message) -> bool {
        match self {
            Filter::True => true,
            Filter::False => false,
            Filter::Correlation(c) => c.matches(m),
            Filter::Sql { expr, .. } => expr.eval(m) == Some(true),
        }
    }

    /// Parses a SQL filter expression.
    pub fn sql(text: &str) -> Result<Filter, SqlError> {
        Ok(Filter::Sql {
            text: text.to_string(),
            expr: parse_sql(text)?,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// SQL filter

/// A property reference.
#[derive(Debug, Clone, PartialEq)]
pub enum Ident {
    Sys(String),
    User(String),
}

/// A literal.
#[derive(Debug, Clone, PartialEq)]
pub enum Lit {
    Null,
    Val(PropValue),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// A parsed SQL filter expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Cmp(Ident, CmpOp, Lit),
    In {
        ident: Ident,
        list: Vec<PropValue>,
        negated: bool,
    },
    Exists(Ident),
    IsNull {
        ident: Ident,
        negated: bool,
    },
    Const(bool),
}

fn lookup(m: &Message, id: &Ident) -> Option<PropValue> {
    match id {
        Ident::User(n) => app_prop(m, n).cloned(),
        Ident::Sys(n) => {
            let p = &m.props;
            let s = match n.to_ascii_lowercase().as_str() {
                "messageid" => Some(m.message_id.clone()),
                "correlationid" => p.correlation_id.clone(),
                "label" => p.label.clone(),
                "to" => p.to.clone(),
                "replyto" => p.reply_to.clone(),
                "sessionid" => p.session_id.clone(),
                "replytosessionid" => p.reply_to_session_id.clone(),
                "contenttype" => m.content_type.clone(),
                "deliverycount" => return Some(PropValue::Int(m.delivery_count.into())),
                "sequencenumber" => return Some(PropValue::Int(m.sequence_number)),
                _ => None,
            };
            s.map(PropValue::Str)
        }
    }
}

fn compare(a: &PropValue, op: CmpOp, b: &PropValue) -> Option<bool> {
    use std::cmp::Ordering;
    let ord: Ordering = match (a, b) {
        (PropValue::Str(x), PropValue::Str(y)) => x.cmp(y),
        (PropValue::Bool(x), PropValue::Bool(y)) => x.cmp(y),
        (x, y) => num(x)?.partial_cmp(&num(y)?)?,
    };
    Some(match op {
        CmpOp::Eq => ord == Ordering::Equal,
        CmpOp::Ne => ord != Ordering::Equal,
        CmpOp::Lt => ord == Ordering::Less,
        CmpOp::Le => ord != Ordering::Greater,
        CmpOp::Gt => ord == Ordering::Greater,
        CmpOp::Ge => ord != Ordering::Less,
    })
}

impl Expr {
    /// Three-valued evaluation: `None` is SQL's UNKNOWN (e.g. a missing property compared).
    pub fn eval(&self, m: &Message) -> Option<bool> {
        match self {
            Expr::Const(b) => Some(*b),
            Expr::And(a, b) => match (a.eval(m), b.eval(m)) {
                (Some(false), _) | (_, Some(false)) => Some(false),
                (Some(true), Some(true)) => Some(true),
                _ => None,
            },
            Expr::Or(a, b) => match (a.eval(m), b.eval(m)) {
                (Some(true), _) | (_, Some(true)) => Some(true),
                (Some(false), Some(false)) => Some(false),
                _ => None,
            },
            Expr::Not(a) => a.eval(m).map(|b| !b),
            Expr::Exists(id) => Some(lookup(m, id).is_some()),
            Expr::IsNull { ident, negated } => Some(lookup(m, ident).is_none() != *negated),
            Expr::Cmp(id, op, lit) => {
                let have = lookup(m, id)?;
                match lit {
                    Lit::Null => None,
                    Lit::Val(v) => compare(&have, *op, v),
                }
            }
            Expr::In {
                ident,
                list,
                negated,
            } => {
                let have = lookup(m, ident)?;
                let found = list.iter().any(|v| prop_eq(&have, v));
                Some(found != *negated)
            }
        }
    }
}

/// A SQL filter that does not parse.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("invalid SQL filter at position {pos}: {message}")]
pub struct SqlError {
    pub pos: usize,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Num(String),
    Op(&'static str),
    LParen,
    RParen,
    Comma,
}

fn tokenize(s: &str) -> Result<Vec<(usize, Tok)>, SqlError> {
    let chars: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let err = |pos: usize, m: &str| SqlError {
        pos,
        message: m.to_string(),
    };
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        if c.is_whitespace() {
            i += 1;
        } else if c == '(' {
            out.push((start, Tok::LParen));
            i += 1;
        } else if c == ')' {
            out.push((start, Tok::RParen));
            i += 1;
        } else if c == ',' {
            out.push((start, Tok::Comma));
            i += 1;
        } else if c == '\'' {
            let mut v = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err(err(start, "unterminated string literal")),
                    Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                        v.push('\'');
                        i += 2;
                    }
                    Some('\'') => {
                        i += 1;
                        break;
                    }
                    Some(ch) => {
                        v.push(*ch);
                        i += 1;
                    }
                }
            }
            out.push((start, Tok::Str(v)));
        } else if c == '[' {
            let mut v = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err(err(start, "unterminated [identifier]")),
                    Some(']') => {
                        i += 1;
                        break;
                    }
                    Some(ch) => {
                        v.push(*ch);
                        i += 1;
                    }
                }
            }
            out.push((start, Tok::Ident(v)));
        } else if c.is_ascii_digit()
            || (c == '-' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit()))
        {
            let mut v = String::from(c);
            i += 1;
            while let Some(ch) = chars.get(i) {
                if ch.is_ascii_digit() || *ch == '.' {
                    v.push(*ch);
                    i += 1;
                } else {
                    break;
                }
            }
            out.push((start, Tok::Num(v)));
        } else if c.is_alphabetic() || c == '_' || c == '$' {
            let mut v = String::new();
            while let Some(ch) = chars.get(i) {
                if ch.is_alphanumeric() || *ch == '_' || *ch == '.' || *ch == '$' || *ch == '-' {
                    v.push(*ch);
                    i += 1;
                } else {
                    break;
                }
            }
            out.push((start, Tok::Ident(v)));
        } else {
            let two: String = chars[i..chars.len().min(i + 2)].iter().collect();
            let op = match two.as_str() {
                "<>" => Some("<>"),
                "!=" => Some("<>"),
                "<=" => Some("<="),
                ">=" => Some(">="),
                _ => None,
            };
            if let Some(op) = op {
                out.push((start, Tok::Op(op)));
                i += 2;
                continue;
            }
            let op = match c {
                '=' => "=",
                '<' => "<",
                '>' => ">",
                _ => return Err(err(start, &format!("unexpected character '{c}'"))),
            };
            out.push((start, Tok::Op(op)));
            i += 1;
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<(usize, Tok)>,
    pos: usize,
    end: usize,
}

fn is_kw(t: Option<&Tok>, kw: &str) -> bool {
    matches!(t, Some(Tok::Ident(s)) if s.eq_ignore_ascii_case(kw))
}

const KEYWORDS: [&str; 9] = [
    "AND", "OR", "NOT", "IN", "IS", "NULL", "EXISTS", "TRUE", "FALSE",
];

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|(_, t)| t)
    }
    fn peek2(&self) -> Option<&Tok> {
        self.toks.get(self.pos + 1).map(|(_, t)| t)
    }
    fn here(&self) -> usize {
        self.toks.get(self.pos).map(|(p, _)| *p).unwrap_or(self.end)
    }
    fn err<T>(&self, m: &str) -> Result<T, SqlError> {
        Err(SqlError {
            pos: self.here(),
            message: m.to_string(),
        })
    }
    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).map(|(_, t)| t.clone());
        self.pos += 1;
        t
    }
    fn expect(&mut self, t: Tok, what: &str) -> Result<(), SqlError> {
        if self.peek() == Some(&t) {
            self.pos += 1;
            Ok(())
        } else {
            self.err(&format!("expected {what}"))
        }
    }
    fn or(&mut self) -> Result<Expr, SqlError> {
        let mut left = self.and()?;
        while is_kw(self.peek(), "OR") {
            self.pos += 1;
            let right = self.and()?;
            left = Expr::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }
    fn and(&mut self) -> Result<Expr, SqlError> {
        let mut left = self.not()?;
        while is_kw(self.peek(), "AND") {
            self.pos += 1;
            let right = self.not()?;
            left = Expr::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }
    fn not(&mut self) -> Result<Expr, SqlError> {
        if is_kw(self.peek(), "NOT") {
            self.pos += 1;
            return Ok(Expr::Not(Box::new(self.not()?)));
        }
        self.primary()
    }
    fn ident(&mut self) -> Result<Ident, SqlError> {
        match self.peek().cloned() {
            Some(Tok::Ident(s)) if !KEYWORDS.iter().any(|k| s.eq_ignore_ascii_case(k)) => {
                self.pos += 1;
                let lower = s.to_ascii_lowercase();
                Ok(if let Some(rest) = lower.strip_prefix("sys.") {
                    Ident::Sys(rest.to_string())
                } else if lower.starts_with("user.") {
                    Ident::User(s[5..].to_string())
                } else {
                    Ident::User(s)
                })
            }
            _ => self.err("expected a property name"),
        }
    }
    fn literal(&mut self) -> Result<Lit, SqlError> {
        match self.peek().cloned() {
            Some(Tok::Str(s)) => {
                self.pos += 1;
                Ok(Lit::Val(PropValue::Str(s)))
            }
            Some(Tok::Num(n)) => {
                let v = if let Ok(i) = n.parse::<i64>() {
                    PropValue::Int(i)
                } else if let Ok(f) = n.parse::<f64>() {
                    PropValue::Float(f)
                } else {
                    return self.err("invalid number");
                };
                self.pos += 1;
                Ok(Lit::Val(v))
            }
            Some(Tok::Ident(s)) if s.eq_ignore_ascii_case("TRUE") => {
                self.pos += 1;
                Ok(Lit::Val(PropValue::Bool(true)))
            }
            Some(Tok::Ident(s)) if s.eq_ignore_ascii_case("FALSE") => {
                self.pos += 1;
                Ok(Lit::Val(PropValue::Bool(false)))
            }
            Some(Tok::Ident(s)) if s.eq_ignore_ascii_case("NULL") => {
                self.pos += 1;
                Ok(Lit::Null)
            }
            _ => self.err("expected a literal"),
        }
    }
    fn primary(&mut self) -> Result<Expr, SqlError> {
        if self.peek() == Some(&Tok::LParen) {
            self.pos += 1;
            let e = self.or()?;
            self.expect(Tok::RParen, "')'")?;
            return Ok(e);
        }
        if is_kw(self.peek(), "EXISTS") && self.peek2() == Some(&Tok::LParen) {
            self.pos += 2;
            let id = self.ident()?;
            self.expect(Tok::RParen, "')'")?;
            return Ok(Expr::Exists(id));
        }
        if is_kw(self.peek(), "TRUE") {
            self.pos += 1;
            return Ok(Expr::Const(true));
        }
        if is_kw(self.peek(), "FALSE") {
            self.pos += 1;
            return Ok(Expr::Const(false));
        }
        if self.peek() == Some(&Tok::Num("1".into())) && self.peek2() == Some(&Tok::Op("=")) {
            // `1=1` / `1=0`, as the portal writes true/false filters
            let save = self.pos;
            self.pos += 2;
            if let Some(Tok::Num(n)) = self.next() {
                return Ok(Expr::Const(n == "1"));
            }
            self.pos = save;
        }
        let id = self.ident()?;
        if is_kw(self.peek(), "IS") {
            self.pos += 1;
            let negated = if is_kw(self.peek(), "NOT") {
                self.pos += 1;
                true
            } else {
                false
            };
            if !is_kw(self.peek(), "NULL") {
                return self.err("expected NULL");
            }
            self.pos += 1;
            return Ok(Expr::IsNull { ident: id, negated });
        }
        let negated = if is_kw(self.peek(), "NOT") && is_kw(self.peek2(), "IN") {
            self.pos += 1;
            true
        } else {
            false
        };
        if is_kw(self.peek(), "IN") {
            self.pos += 1;
            self.expect(Tok::LParen, "'(' after IN")?;
            let mut list = Vec::new();
            loop {
                match self.literal()? {
                    Lit::Val(v) => list.push(v),
                    Lit::Null => return self.err("NULL is not allowed in an IN list"),
                }
                match self.next() {
                    Some(Tok::Comma) => continue,
                    Some(Tok::RParen) => break,
                    _ => {
                        self.pos -= 1;
                        return self.err("expected ',' or ')'");
                    }
                }
            }
            return Ok(Expr::In {
                ident: id,
                list,
                negated,
            });
        }
        let op = match self.next() {
            Some(Tok::Op("=")) => CmpOp::Eq,
            Some(Tok::Op("<>")) => CmpOp::Ne,
            Some(Tok::Op("<")) => CmpOp::Lt,
            Some(Tok::Op("<=")) => CmpOp::Le,
            Some(Tok::Op(">")) => CmpOp::Gt,
            Some(Tok::Op(">=")) => CmpOp::Ge,
            _ => {
                self.pos -= 1;
                return self.err("expected a comparison, IN, IS or EXISTS");
            }
        };
        let lit = self.literal()?;
        Ok(Expr::Cmp(id, op, lit))
    }
}

/// Parses a SQL filter expression.
pub fn parse_sql(text: &str) -> Result<Expr, SqlError> {
    let toks = tokenize(text)?;
    if toks.is_empty() {
        return Err(SqlError {
            pos: 0,
            message: "empty filter".into(),
        });
    }
    let mut p = Parser {
        toks,
        pos: 0,
        end: text.chars().count(),
    };
    let e = p.or()?;
    if p.pos < p.toks.len() {
        return p.err("unexpected text after the expression");
    }
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::servicebus::message::BrokerProps;
    use bytes::Bytes;
    use chrono::Utc;

    fn msg(props: &[(&str, PropValue)], label: Option<&str>) -> Message {
        Message {
            body: Bytes::new(),
            content_type: Some("application/json".into()),
            props: BrokerProps {
                label: label.map(str::to_string),
                correlation_id: Some("c1".into()),
                ..Default::default()
            },
            app_props: props
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            message_id: "m1".into(),
            sequence_number: 7,
            enqueued_time: Utc::now(),
            delivery_count: 0,
            expires_at: None,
            dead_letter_reason: None,
            dead_letter_description: None,
            dead_letter_source: None,
        }
    }

    fn s(v: &str) -> PropValue {
        PropValue::Str(v.into())
    }

    #[test]
    fn sql_table() {
        let m = msg(
            &[
                ("type", s("io.galleon.image.ready.v1")),
                ("region", s("westeurope")),
                ("priority", PropValue::Int(3)),
                ("urgent", PropValue::Bool(true)),
            ],
            Some("L1"),
        );
        let cases: &[(&str, bool)] = &[
            ("type = 'io.galleon.image.ready.v1'", true),
            ("type = 'io.galleon.step.failed.v1'", false),
            ("TYPE = 'io.galleon.image.ready.v1'", true),
            ("user.type = 'io.galleon.image.ready.v1'", true),
            ("[type] = 'io.galleon.image.ready.v1'", true),
            ("type <> 'x'", true),
            ("type != 'io.galleon.image.ready.v1'", false),
            ("type IN ('a', 'io.galleon.image.ready.v1')", true),
            ("type in ('a','b')", false),
            ("type NOT IN ('a','b')", true),
            (
                "region = 'westeurope' AND type = 'io.galleon.image.ready.v1'",
                true,
            ),
            (
                "region = 'eastus' AND type = 'io.galleon.image.ready.v1'",
                false,
            ),
            (
                "region = 'eastus' OR type = 'io.galleon.image.ready.v1'",
                true,
            ),
            ("NOT region = 'eastus'", true),
            ("NOT (region = 'westeurope' OR region = 'eastus')", false),
            ("EXISTS(region)", true),
            ("EXISTS(missing)", false),
            ("NOT EXISTS(missing)", true),
            ("missing = 'x'", false),
            ("NOT missing = 'x'", false), // UNKNOWN stays UNKNOWN
            ("missing = 'x' OR region = 'westeurope'", true),
            ("missing IS NULL", true),
            ("region IS NOT NULL", true),
            ("priority = 3", true),
            ("priority > 2 AND priority <= 3", true),
            ("priority < 3", false),
            ("priority = '3'", false),
            ("urgent = TRUE", true),
            ("sys.Label = 'L1'", true),
            ("sys.CorrelationId = 'c1' AND sys.MessageId = 'm1'", true),
            ("sys.ContentType = 'application/json'", true),
            ("1=1", true),
            ("1=0", false),
            ("TRUE", true),
            ("region = 'it''s'", false),
        ];
        for (text, want) in cases {
            let f = Filter::sql(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(f.matches(&m), *want, "{text}");
        }
    }

    #[test]
    fn sql_errors() {
        for bad in [
            "",
            "type =",
            "type = 'x",
            "type IN ()",
            "type IN ('a' 'b')",
            "(type = 'a'",
            "type = 'a' extra",
            "= 'a'",
            "type ~ 'a'",
            "AND = 'a'",
            "type IN ('a', NULL)",
        ] {
            assert!(parse_sql(bad).is_err(), "{bad:?} should not parse");
        }
        let e = parse_sql("type = 'a' AND").expect_err("dangling AND");
        assert_eq!(e.pos, 14);
    }

    #[test]
    fn parser_never_panics() {
        // every sequence of up to four pieces from this alphabet either parses or errors
        let pieces = [
            "a", "'x'", "1", "-2.5", "=", "<>", "<=", "(", ")", ",", "AND", "OR", "NOT", "IN",
            "IS", "NULL", "EXISTS", "TRUE", "[", "]", "'", "sys.", "!", " ",
        ];
        let m = msg(&[("a", s("x"))], None);
        let n = pieces.len();
        for i in 0..n * n * n * n {
            let text: String = [i % n, (i / n) % n, (i / n / n) % n, (i / n / n / n) % n]
                .iter()
                .map(|&k| pieces[k])
                .collect::<Vec<_>>()
                .join(" ");
            if let Ok(f) = Filter::sql(&text) {
                let _ = f.matches(&m);
            }
        }
    }

    #[test]
    fn correlation_filter() {
        let m = msg(&[("type", s("io.galleon.image.ready.v1"))], Some("L1"));
        let mut f = CorrelationFilter::default();
        assert!(f.matches(&m));
        f.properties
            .insert("Type".into(), s("io.galleon.image.ready.v1"));
        assert!(f.matches(&m));
        f.label = Some("L1".into());
        assert!(f.matches(&m));
        f.correlation_id = Some("other".into());
        assert!(!f.matches(&m));
        f.correlation_id = None;
        f.properties.insert("missing".into(), s("x"));
        assert!(!f.matches(&m));
        let mut f = CorrelationFilter::default();
        f.properties
            .insert("type".into(), s("io.galleon.step.failed.v1"));
        assert!(!f.matches(&m));
        let f = CorrelationFilter {
            content_type: Some("text/plain".into()),
            ..Default::default()
        };
        assert!(!f.matches(&m));
    }
}
