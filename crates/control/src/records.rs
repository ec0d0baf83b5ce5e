//! The store port under the job lifecycle: keyed records and conditional writes, nothing
//! more.
//!
//! A backend (SQLite, DynamoDB) stores records and applies a [`Write`] only when its
//! [`Cond`] holds, atomically per record, or for several records at once in
//! [`RecordStore::transact`]. It knows nothing of jobs, leases or states: which writes
//! happen, and under which conditions, is decided once, in [`crate::lifecycle`], and the
//! contract suite proves on every backend that a condition means the same thing there as
//! [`Cond::holds`] says here (the embedded backend evaluates conditions with that very
//! function; DynamoDB translates them into condition expressions).
//!
//! The layout is DynamoDB's single-table design, kept on every backend so a record looks
//! the same wherever it lives: a partition key (`JOB#<id>`, `ASSET#<name>`) and a sort key
//! (`JOB`, `ITEM#video#000003`, `PLAN#<id>#0000`).

use crate::ports::PortResult;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A stored value. Numbers are one type (as in DynamoDB); counters and tokens stay exact
/// far beyond any count the pipeline reaches (2^53).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Value {
    /// A flag.
    Bool(bool),
    /// A number.
    Num(f64),
    /// A string.
    Str(String),
}

impl Value {
    /// A string value.
    pub fn str(s: impl Into<String>) -> Value {
        Value::Str(s.into())
    }

    /// A number from any integer or float the lifecycle stores.
    pub fn num(n: impl Into<f64>) -> Value {
        Value::Num(n.into())
    }

    /// Orders two values of the same type; `None` across types (a condition comparing
    /// them fails, as it does in DynamoDB).
    fn compare(&self, other: &Value) -> Option<std::cmp::Ordering> {
        match (self, other) {
            (Value::Num(a), Value::Num(b)) => a.partial_cmp(b),
            (Value::Str(a), Value::Str(b)) => Some(a.cmp(b)),
            (Value::Bool(a), Value::Bool(b)) => Some(a.cmp(b)),
            _ => None,
        }
    }
}

/// A record's attributes by name.
pub type Fields = BTreeMap<String, Value>;

/// Where a record lives: partition and sort key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    /// Partition key: `JOB#<id>` for a job and everything under it, `ASSET#<name>`.
    pub pk: String,
    /// Sort key within the partition.
    pub sk: String,
}

impl Key {
    /// A key from its two parts.
    pub fn new(pk: impl Into<String>, sk: impl Into<String>) -> Key {
        Key {
            pk: pk.into(),
            sk: sk.into(),
        }
    }
}

/// A condition on a record, evaluated atomically with the write it guards. Every
/// condition other than [`Cond::Absent`] is false on a record that does not exist.
/// Comparisons are between values of one type: the lifecycle never compares a number with
/// a string, and backends need not agree on what that would mean.
#[derive(Debug, Clone, PartialEq)]
pub enum Cond {
    /// The record exists.
    Exists,
    /// The record does not exist.
    Absent,
    /// The attribute equals the value.
    Eq(&'static str, Value),
    /// The attribute exists and differs from the value.
    Ne(&'static str, Value),
    /// The attribute equals one of the values.
    In(&'static str, Vec<Value>),
    /// The attribute is less than the value.
    Lt(&'static str, Value),
    /// The attribute is at most the value.
    Le(&'static str, Value),
    /// The first attribute is less than the second.
    LtAttr(&'static str, &'static str),
    /// The attribute is not set.
    Missing(&'static str),
    /// All hold.
    All(Vec<Cond>),
    /// At least one holds.
    Any(Vec<Cond>),
}

impl Cond {
    /// Whether the condition holds for `record` (`None`: no such record). The embedded
    /// backend decides with this; every other backend must agree with it, which the
    /// contract suite checks.
    pub fn holds(&self, record: Option<&Fields>) -> bool {
        let Some(r) = record else {
            return matches!(self, Cond::Absent)
                || matches!(self, Cond::Any(cs) if cs.iter().any(|c| c.holds(None)));
        };
        let cmp = |name: &str, v: &Value| r.get(name).and_then(|a| a.compare(v));
        match self {
            Cond::Exists => true,
            Cond::Absent => false,
            Cond::Eq(name, v) => cmp(name, v) == Some(std::cmp::Ordering::Equal),
            Cond::Ne(name, v) => r.get(*name).is_some_and(|a| a != v),
            Cond::In(name, vs) => vs
                .iter()
                .any(|v| cmp(name, v) == Some(std::cmp::Ordering::Equal)),
            Cond::Lt(name, v) => cmp(name, v) == Some(std::cmp::Ordering::Less),
            Cond::Le(name, v) => {
                matches!(
                    cmp(name, v),
                    Some(std::cmp::Ordering::Less | std::cmp::Ordering::Equal)
                )
            }
            Cond::LtAttr(a, b) => match (r.get(*a), r.get(*b)) {
                (Some(x), Some(y)) => x.compare(y) == Some(std::cmp::Ordering::Less),
                _ => false,
            },
            Cond::Missing(name) => !r.contains_key(*name),
            Cond::All(cs) => cs.iter().all(|c| c.holds(record)),
            Cond::Any(cs) => cs.iter().any(|c| c.holds(record)),
        }
    }
}

/// One change to a record. A write changes each attribute at most once, and every value a
/// change reads (an `Add`'s base, a `Copy`'s source, whether a `SetIfMissing` attribute is
/// set) is read from the record as it was before the write: DynamoDB's update expressions
/// work that way, and [`Change::apply_all`] enforces the same rules.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Sets the attribute.
    Set(&'static str, Value),
    /// Sets the attribute unless it is set.
    SetIfMissing(&'static str, Value),
    /// Adds to a number (an absent attribute counts as zero; the attribute must be a
    /// number if it is set).
    Add(&'static str, f64),
    /// Removes the attribute.
    Remove(&'static str),
    /// Sets the first attribute to the second's value; the second must be set.
    Copy(&'static str, &'static str),
}

impl Change {
    /// The attribute the change writes.
    pub fn attribute(&self) -> &'static str {
        match self {
            Change::Set(a, _)
            | Change::SetIfMissing(a, _)
            | Change::Add(a, _)
            | Change::Remove(a)
            | Change::Copy(a, _) => a,
        }
    }

    /// Applies `changes` to `r` as one write (what the embedded backend stores; DynamoDB
    /// translates the same changes into an update expression with the same effect). An
    /// error, and `r` untouched, for a write DynamoDB would refuse: an attribute changed
    /// twice, a `Copy` from an attribute that is not set, an `Add` to a non-number.
    pub fn apply_all(changes: &[Change], r: &mut Fields) -> Result<(), String> {
        let before = r.clone();
        let mut out = r.clone();
        let mut seen = std::collections::BTreeSet::new();
        for c in changes {
            if !seen.insert(c.attribute()) {
                return Err(format!("{} is changed twice in one write", c.attribute()));
            }
            match c {
                Change::Set(name, v) => {
                    out.insert((*name).to_string(), v.clone());
                }
                Change::SetIfMissing(name, v) => {
                    if !before.contains_key(*name) {
                        out.insert((*name).to_string(), v.clone());
                    }
                }
                Change::Add(name, by) => {
                    let base = match before.get(*name) {
                        None => 0.0,
                        Some(Value::Num(n)) => *n,
                        Some(other) => return Err(format!("cannot add to {name}: {other:?}")),
                    };
                    out.insert((*name).to_string(), Value::Num(base + by));
                }
                Change::Remove(name) => {
                    out.remove(*name);
                }
                Change::Copy(to, from) => {
                    let v = before
                        .get(*from)
                        .cloned()
                        .ok_or_else(|| format!("cannot copy {from} into {to}: it is not set"))?;
                    out.insert((*to).to_string(), v);
                }
            }
        }
        *r = out;
        Ok(())
    }
}

/// A conditional update of one existing record.
#[derive(Debug, Clone, PartialEq)]
pub struct Write {
    /// The record.
    pub key: Key,
    /// What must hold for the changes to apply (besides the record existing).
    pub when: Cond,
    /// The changes, applied in order.
    pub changes: Vec<Change>,
}

/// Which attribute an index is on. Both index job records (`sk = JOB`) only, ordered by
/// `created_at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Index {
    /// `status`: jobs in a state.
    Status,
    /// `source`: jobs made from one source.
    Source,
}

impl Index {
    /// The indexed attribute.
    pub fn attribute(self) -> &'static str {
        match self {
            Index::Status => "status",
            Index::Source => "source",
        }
    }
}

/// Records with conditional writes (SQLite, DynamoDB): the whole of what the job lifecycle
/// asks of a backend. Every write to one record is atomic; conditions are evaluated with
/// the write, never before it.
pub trait RecordStore: Send + Sync {
    /// Reads a record, strongly consistent.
    fn get(&self, key: &Key) -> PortResult<Option<Fields>>;
    /// Stores a record unless one exists under its key (put-if-absent); true when this
    /// call stored it.
    fn create(&self, key: &Key, fields: &Fields) -> PortResult<bool>;
    /// Stores a record, replacing whatever was there (documents written under a fresh key
    /// that nothing reads until a conditional write names them).
    fn put(&self, key: &Key, fields: &Fields) -> PortResult<()>;
    /// [`Self::create`] for each record, in as few requests as the backend allows: a
    /// plan's items (thousands for a film) are written in batches, not one request each,
    /// which is what a burst of ingests costs a new on-demand table.
    fn create_all(&self, records: &[(Key, Fields)]) -> PortResult<()> {
        for (key, fields) in records {
            self.create(key, fields)?;
        }
        Ok(())
    }
    /// Applies `w` if its record exists and its condition holds; returns the record as
    /// written, or `None` when the record is absent or the condition failed. Never
    /// creates a record.
    fn update(&self, w: &Write) -> PortResult<Option<Fields>>;
    /// Applies every write or none (at most one write per record); false when any
    /// condition failed, or the backend refused the transaction for a concurrent one.
    fn transact(&self, writes: &[Write]) -> PortResult<bool>;
    /// The records of partition `pk` whose sort key starts with `prefix`, in sort-key
    /// order, strongly consistent.
    fn query(&self, pk: &str, prefix: &str) -> PortResult<Vec<(String, Fields)>>;
    /// Partition keys of the job records whose `index` attribute is `value`, oldest first
    /// (newest first when asked). May lag writes by moments (DynamoDB's index does).
    fn index(&self, index: Index, value: &str, newest_first: bool) -> PortResult<Vec<String>>;
    /// Removes a record (absent is fine).
    fn remove(&self, key: &Key) -> PortResult<()>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(pairs: &[(&str, Value)]) -> Fields {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), v.clone()))
            .collect()
    }

    #[test]
    fn conditions_on_absent_records_fail_except_absent() {
        assert!(Cond::Absent.holds(None));
        assert!(!Cond::Exists.holds(None));
        assert!(!Cond::Missing("x").holds(None));
        assert!(Cond::Any(vec![Cond::Exists, Cond::Absent]).holds(None));
        assert!(!Cond::All(vec![Cond::Absent, Cond::Missing("x")]).holds(None));
    }

    #[test]
    fn comparisons_need_the_attribute_and_one_type() {
        let r = rec(&[
            ("n", Value::num(3)),
            ("m", Value::num(4)),
            ("s", Value::str("a")),
        ]);
        assert!(Cond::Lt("n", Value::num(4)).holds(Some(&r)));
        assert!(!Cond::Lt("n", Value::num(3)).holds(Some(&r)));
        assert!(Cond::Le("n", Value::num(3)).holds(Some(&r)));
        assert!(!Cond::Lt("s", Value::num(9)).holds(Some(&r)));
        assert!(!Cond::Eq("zz", Value::num(0)).holds(Some(&r)));
        assert!(!Cond::Ne("zz", Value::num(0)).holds(Some(&r)));
        assert!(Cond::LtAttr("n", "m").holds(Some(&r)));
        assert!(!Cond::LtAttr("m", "n").holds(Some(&r)));
        assert!(Cond::In("s", vec![Value::str("b"), Value::str("a")]).holds(Some(&r)));
    }

    #[test]
    fn changes_read_the_record_as_it_was_and_change_each_attribute_once() {
        let mut r = rec(&[("frames", Value::num(10)), ("since", Value::num(5))]);
        Change::apply_all(
            &[
                Change::Add("token", 1.0),
                Change::SetIfMissing("since", Value::num(6)),
                Change::SetIfMissing("queued", Value::num(7)),
                Change::Set("frames", Value::num(20)),
                // Reads the value before the write, as DynamoDB's SET does.
                Change::Copy("frames_done", "frames"),
                Change::Remove("x"),
            ],
            &mut r,
        )
        .unwrap();
        assert_eq!(r.get("token"), Some(&Value::num(1)));
        assert_eq!(r.get("since"), Some(&Value::num(5)));
        assert_eq!(r.get("queued"), Some(&Value::num(7)));
        assert_eq!(r.get("frames"), Some(&Value::num(20)));
        assert_eq!(r.get("frames_done"), Some(&Value::num(10)));
        r.insert("label".into(), Value::str("x"));
        let before = r.clone();
        for bad in [
            vec![Change::Add("token", 1.0), Change::Add("token", 1.0)],
            vec![Change::Set("x", Value::Bool(true)), Change::Remove("x")],
            vec![Change::Copy("a", "nothing")],
            vec![Change::Add("frames", 1.0), Change::Add("label", 1.0)],
        ] {
            assert!(Change::apply_all(&bad, &mut r).is_err(), "{bad:?}");
            assert_eq!(r, before, "a refused write changed the record");
        }
    }
}
