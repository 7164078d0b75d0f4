//! `POST .../search`: a request is compiled once (validated as HubSpot validates it), then
//! evaluated over the portal as search sees it (archived records never, pending changes not
//! yet: see U4 in `mutate.rs`).
//!
//! - SR1: the order is total: the asked sort, then id ascending, so offsets page stably.
//! - SR2: no page reaches past `SEARCH_RESULT_CAP` results (`after + limit > 10000` is a 400).
//! - S3: a query with one filter group reads only the records its created-date or id bounds
//!   allow (the created index, the id order); the answer is the one a full scan gives.

use std::cmp::Ordering;

use wire::{parse_ms, Direction, Filter, Operator, SearchRequest, SEARCH_PAGE_MAX, SEARCH_RESULT_CAP};

use super::catalog::{Gen, Kind, ObjectType, PropSpec};
use super::portal::{select_properties, Portal, Rec};
use super::schema::TypeSchema;
use super::values::{value, ValueCtx};

/// HubSpot's current schema: up to 6 groups, 6 filters a group, 18 filters in all.
const MAX_GROUPS: usize = 6;
const MAX_FILTERS_PER_GROUP: usize = 6;
const MAX_FILTERS: usize = 18;
/// The page size when a request names none.
const DEFAULT_LIMIT: u32 = 10;

/// A validated search request.
#[derive(Debug)]
pub struct Query {
    groups: Vec<Vec<Cond>>,
    sort: Option<(&'static PropSpec, Direction)>,
    pub limit: usize,
    pub after: usize,
    pub properties: Vec<&'static PropSpec>,
}

#[derive(Debug)]
struct Cond {
    spec: &'static PropSpec,
    op: Operator,
    /// Operands (value, highValue, or values), parsed to numbers when the property is one.
    operands: Vec<Operand>,
}

#[derive(Debug, Clone, PartialEq)]
enum Operand {
    Num(i64),
    Str(String),
}

/// The value a record has for a property, comparable with an operand.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Val {
    Null,
    Num(i64),
    Str(String),
}

/// Is the property compared as a number (ids, timestamps and numeric properties)?
fn numeric(spec: &PropSpec) -> bool {
    matches!(spec.kind, Kind::Number | Kind::DateTime | Kind::Date)
}

/// Decimal numbers (amounts) compare in thousandths, exactly enough for money and counts.
const DECIMAL_SCALE: f64 = 1000.0;

fn parse_operand(spec: &PropSpec, raw: &str) -> Result<Operand, String> {
    if !numeric(spec) {
        return Ok(Operand::Str(raw.to_string()));
    }
    let parsed = match (spec.kind, spec.gen) {
        (Kind::DateTime | Kind::Date, _) => parse_ms(raw),
        (_, Gen::ObjectId) => raw.trim().parse::<i64>().ok(),
        _ => raw
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .map(|f| (f * DECIMAL_SCALE).round() as i64),
    };
    parsed
        .map(Operand::Num)
        .ok_or_else(|| format!("'{raw}' is not a valid value for property {}", spec.name))
}

/// Validates a request for type `t` (with the portal's properties `schema`) as HubSpot does;
/// the error is the 400's message.
pub fn compile(schema: &TypeSchema, t: ObjectType, req: &SearchRequest) -> Result<Query, String> {
    let total: usize = req.filter_groups.iter().map(|g| g.filters.len()).sum();
    if req.filter_groups.len() > MAX_GROUPS {
        return Err(format!(
            "Too many filter groups ({}); the maximum is {MAX_GROUPS}",
            req.filter_groups.len()
        ));
    }
    if req
        .filter_groups
        .iter()
        .any(|g| g.filters.len() > MAX_FILTERS_PER_GROUP)
        || total > MAX_FILTERS
    {
        return Err(format!(
            "Too many filters; at most {MAX_FILTERS_PER_GROUP} per group and {MAX_FILTERS} in all"
        ));
    }
    let groups = req
        .filter_groups
        .iter()
        .map(|g| {
            g.filters
                .iter()
                .map(|f| compile_filter(schema, t, f))
                .collect::<Result<Vec<_>, _>>()
        })
        .collect::<Result<Vec<_>, _>>()?;
    if req.sorts.len() > 1 {
        return Err("Only one sort is allowed per search request".to_string());
    }
    let sort = match req.sorts.first() {
        Some(s) => Some((property(schema, t, &s.property_name)?, s.direction)),
        None => None,
    };
    let limit = req.limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > SEARCH_PAGE_MAX {
        return Err(format!(
            "limit must be between 1 and {SEARCH_PAGE_MAX}, got {limit}"
        ));
    }
    let after = match req.after.as_deref().map(str::trim) {
        None | Some("") => 0,
        Some(raw) => raw
            .parse::<usize>()
            .map_err(|_| format!("after '{raw}' is not a valid offset"))?,
    };
    if after as u64 + u64::from(limit) > SEARCH_RESULT_CAP {
        return Err(format!(
            "Search results are capped at {SEARCH_RESULT_CAP}: after ({after}) + limit ({limit}) reaches past them"
        ));
    }
    Ok(Query {
        groups,
        sort,
        limit: limit as usize,
        after,
        properties: select_properties(schema, t, Some(&req.properties)),
    })
}

fn property(schema: &TypeSchema, t: ObjectType, name: &str) -> Result<&'static PropSpec, String> {
    schema.get(name).filter(|p| !p.archived).ok_or_else(|| {
        format!(
            "There was a problem with the request: property '{name}' does not exist on {}",
            t.name()
        )
    })
}

fn compile_filter(schema: &TypeSchema, t: ObjectType, f: &Filter) -> Result<Cond, String> {
    let spec = property(schema, t, &f.property_name)?;
    let need = |v: &Option<String>, what: &str| {
        v.as_deref()
            .ok_or_else(|| {
                format!(
                    "{what} is required for operator {:?} on {}",
                    f.operator, spec.name
                )
            })
            .and_then(|raw| parse_operand(spec, raw))
    };
    let operands = match f.operator {
        Operator::HasProperty | Operator::NotHasProperty => Vec::new(),
        Operator::Between => vec![need(&f.value, "value")?, need(&f.high_value, "highValue")?],
        Operator::In | Operator::NotIn => {
            let values = f.values.as_deref().unwrap_or_default();
            if values.is_empty() {
                return Err(format!("values are required for operator {:?}", f.operator));
            }
            values
                .iter()
                .map(|v| parse_operand(spec, v))
                .collect::<Result<_, _>>()?
        }
        _ => vec![need(&f.value, "value")?],
    };
    Ok(Cond {
        spec,
        op: f.operator,
        operands,
    })
}

/// The value of one property of a record, typed for comparison.
fn val(ctx: &ValueCtx, spec: &PropSpec, rec: &Rec) -> Val {
    match spec.gen {
        Gen::ObjectId => return Val::Num(rec.id as i64),
        Gen::Created => return Val::Num(rec.created_ms),
        Gen::Modified => return Val::Num(rec.modified_ms),
        _ => {}
    }
    let Some(raw) = value(ctx, spec, rec) else {
        return Val::Null;
    };
    if numeric(spec) {
        match parse_operand(spec, &raw) {
            Ok(Operand::Num(n)) => Val::Num(n),
            _ => Val::Str(raw),
        }
    } else {
        Val::Str(raw)
    }
}

fn cmp(v: &Val, o: &Operand) -> Option<Ordering> {
    match (v, o) {
        (Val::Num(a), Operand::Num(b)) => Some(a.cmp(b)),
        (Val::Str(a), Operand::Str(b)) => Some(a.as_str().cmp(b.as_str())),
        _ => None,
    }
}

impl Cond {
    fn matches(&self, ctx: &ValueCtx, rec: &Rec) -> bool {
        let v = val(ctx, self.spec, rec);
        let o = &self.operands;
        let c = |i: usize| o.get(i).and_then(|op| cmp(&v, op));
        match self.op {
            Operator::Eq => c(0) == Some(Ordering::Equal),
            Operator::Neq => c(0) != Some(Ordering::Equal),
            Operator::Lt => c(0) == Some(Ordering::Less),
            Operator::Lte => matches!(c(0), Some(Ordering::Less | Ordering::Equal)),
            Operator::Gt => c(0) == Some(Ordering::Greater),
            Operator::Gte => matches!(c(0), Some(Ordering::Greater | Ordering::Equal)),
            Operator::Between => {
                matches!(c(0), Some(Ordering::Greater | Ordering::Equal))
                    && matches!(c(1), Some(Ordering::Less | Ordering::Equal))
            }
            Operator::In => o.iter().any(|op| cmp(&v, op) == Some(Ordering::Equal)),
            Operator::NotIn => o.iter().all(|op| cmp(&v, op) != Some(Ordering::Equal)),
            Operator::HasProperty => v != Val::Null,
            Operator::NotHasProperty => v == Val::Null,
            Operator::ContainsToken => match (&v, o.first()) {
                (Val::Str(s), Some(Operand::Str(token))) => {
                    let token = token.trim_matches('*').to_lowercase();
                    s.to_lowercase()
                        .split(|ch: char| !ch.is_alphanumeric())
                        .any(|w| w == token)
                }
                _ => false,
            },
        }
    }
}

impl Query {
    fn matches(&self, ctx: &ValueCtx, rec: &Rec) -> bool {
        self.groups.is_empty() || self.groups.iter().any(|g| g.iter().all(|c| c.matches(ctx, rec)))
    }

    /// The bounds one filter group puts on a property, when the query has one group (several
    /// groups are ORed: no single bound holds).
    fn bounds(&self, gen: Gen) -> Option<(i64, i64)> {
        let [group] = self.groups.as_slice() else {
            return None;
        };
        let mut found = false;
        let (mut lo, mut hi) = (i64::MIN, i64::MAX);
        for c in group.iter().filter(|c| c.spec.gen == gen) {
            let num = |i: usize| match c.operands.get(i) {
                Some(Operand::Num(n)) => Some(*n),
                _ => None,
            };
            let (l, h) = match (c.op, num(0), num(1)) {
                (Operator::Eq, Some(v), _) => (v, v),
                (Operator::Gte, Some(v), _) => (v, i64::MAX),
                (Operator::Gt, Some(v), _) => (v.saturating_add(1), i64::MAX),
                (Operator::Lte, Some(v), _) => (i64::MIN, v),
                (Operator::Lt, Some(v), _) => (i64::MIN, v.saturating_sub(1)),
                (Operator::Between, Some(a), Some(b)) => (a, b),
                _ => continue,
            };
            found = true;
            lo = lo.max(l);
            hi = hi.min(h);
        }
        found.then_some((lo, hi))
    }

    /// A created-date range every match lies in (S3: read through the created index).
    fn created_range(&self) -> Option<(i64, i64)> {
        self.bounds(Gen::Created)
    }

    /// An id range every match lies in (S3: records are kept in id order).
    fn id_range(&self) -> (u64, u64) {
        match self.bounds(Gen::ObjectId) {
            Some((lo, hi)) => (lo.max(0) as u64, hi.max(0) as u64),
            None => (0, u64::MAX),
        }
    }
}

/// Runs a query over the portal as search sees it at `now_ms`: the total number of
/// matches and the records of the asked page, in order (SR1).
pub fn run(portal: &Portal, t: ObjectType, q: &Query, now_ms: i64) -> (u64, Vec<Rec>) {
    let ctx = portal.value_ctx(t);
    let store = portal.store(t);
    let visible = |r: &Rec| {
        if store.pending.is_empty() {
            return Some(*r);
        }
        match store.pending.get(&r.id) {
            Some(p) if p.visible_at_ms > now_ms => p.previous,
            _ => Some(*r),
        }
    };
    let keep = |r: Rec| r.is_live() && q.matches(&ctx, &r);
    // Only the records an index says can match are read (S3); the answer is the same.
    let mut hits: Vec<Rec> = match q.created_range() {
        Some((lo, hi)) => {
            let from = store.by_created.partition_point(|(c, _)| *c < lo);
            let to = store.by_created.partition_point(|(c, _)| *c <= hi);
            let mut hits: Vec<Rec> = store.by_created[from..to.max(from)]
                .iter()
                .filter_map(|(_, i)| store.records.get(*i as usize))
                .filter_map(visible)
                .filter(|r| keep(*r))
                .collect();
            hits.sort_unstable_by_key(|r| r.id);
            hits
        }
        None => {
            let (lo, hi) = q.id_range();
            let from = store.records.partition_point(|r| r.id < lo);
            let to = store.records.partition_point(|r| r.id <= hi);
            store.records[from..to.max(from)]
                .iter()
                .filter_map(visible)
                .filter(|r| keep(*r))
                .collect()
        }
    };
    let total = hits.len() as u64;
    let end = (q.after + q.limit).min(hits.len());
    let Some((spec, direction)) = q.sort else {
        // Records are kept in id order: the default order needs no sort.
        return (
            total,
            hits.get(q.after..end).map(<[Rec]>::to_vec).unwrap_or_default(),
        );
    };
    let mut keyed: Vec<(Val, Rec)> = hits.drain(..).map(|r| (val(&ctx, spec, &r), r)).collect();
    let order = |a: &(Val, Rec), b: &(Val, Rec)| {
        let by_value = match direction {
            Direction::Ascending => a.0.cmp(&b.0),
            Direction::Descending => b.0.cmp(&a.0),
        };
        by_value.then(a.1.id.cmp(&b.1.id))
    };
    if end < keyed.len() && end > 0 {
        keyed.select_nth_unstable_by(end - 1, order);
        keyed.truncate(end);
    }
    keyed.sort_unstable_by(order);
    let page = keyed
        .into_iter()
        .skip(q.after)
        .take(q.limit)
        .map(|(_, r)| r)
        .collect();
    (total, page)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::portal::portal_for_test;
    use wire::{FilterGroup, Sort};

    fn query(filters: Vec<Filter>, sort: Option<Direction>, limit: u32) -> SearchRequest {
        SearchRequest {
            filter_groups: if filters.is_empty() {
                vec![]
            } else {
                vec![FilterGroup { filters }]
            },
            sorts: sort
                .map(|d| {
                    vec![Sort {
                        property_name: "hs_lastmodifieddate".into(),
                        direction: d,
                    }]
                })
                .unwrap_or_default(),
            properties: vec![],
            limit: Some(limit),
            after: None,
        }
    }

    #[test]
    fn between_is_inclusive_and_sort_breaks_ties_by_id() {
        let p = portal_for_test(9, 400, &[ObjectType::Deals]);
        let t = ObjectType::Deals;
        let recs = &p.store(t).records;
        let (lo, hi) = (
            recs[10].modified_ms,
            recs[200].modified_ms.max(recs[10].modified_ms),
        );
        let req = query(
            vec![Filter::between("hs_lastmodifieddate", lo, hi)],
            Some(Direction::Descending),
            200,
        );
        let q = compile(p.schema(t), t, &req).unwrap();
        let (total, page) = run(&p, t, &q, 0);
        let expect = recs.iter().filter(|r| (lo..=hi).contains(&r.modified_ms)).count() as u64;
        assert_eq!(total, expect);
        assert!(page
            .windows(2)
            .all(|w| (w[0].modified_ms, std::cmp::Reverse(w[0].id))
                >= (w[1].modified_ms, std::cmp::Reverse(w[1].id))));
    }

    #[test]
    fn indexed_reads_answer_as_a_full_scan_s3() {
        let p = portal_for_test(5, 600, &[ObjectType::Deals]);
        let t = ObjectType::Deals;
        let recs = &p.store(t).records;
        let mut created: Vec<i64> = recs.iter().map(|r| r.created_ms).collect();
        created.sort_unstable();
        let (a, b) = (created[100], created[400]);
        let id_floor = recs[250].id;
        let cases = vec![
            vec![Filter::between("createdate", a, b)],
            vec![
                Filter::between("createdate", a, b),
                Filter::new("hs_object_id", Operator::Gte, id_floor),
            ],
            vec![
                Filter::new("createdate", Operator::Gt, a),
                Filter::new("createdate", Operator::Lt, b),
            ],
            vec![Filter::new("hs_object_id", Operator::Gt, id_floor)],
            vec![
                Filter::new("hs_object_id", Operator::Lte, id_floor),
                Filter::new("amount", Operator::Gt, "10"),
            ],
        ];
        for filters in cases {
            let req = SearchRequest {
                sorts: vec![Sort {
                    property_name: "hs_object_id".into(),
                    direction: Direction::Ascending,
                }],
                ..query(filters.clone(), None, 200)
            };
            let q = compile(p.schema(t), t, &req).unwrap();
            let (total, page) = run(&p, t, &q, 0);
            let ctx = p.value_ctx(t);
            let expect: Vec<u64> = recs.iter().filter(|r| q.matches(&ctx, r)).map(|r| r.id).collect();
            assert_eq!(total, expect.len() as u64, "{filters:?}");
            let got: Vec<u64> = page.iter().map(|r| r.id).collect();
            assert_eq!(
                got,
                expect.into_iter().take(200).collect::<Vec<_>>(),
                "{filters:?}"
            );
        }
    }

    #[test]
    fn amounts_compare_as_numbers() {
        let p = portal_for_test(4, 200, &[ObjectType::Deals]);
        let t = ObjectType::Deals;
        let req = query(vec![Filter::new("amount", Operator::Gt, "9999.5")], None, 200);
        let (_, page) = run(&p, t, &compile(p.schema(t), t, &req).unwrap(), 0);
        let ctx = p.value_ctx(t);
        let amount = t.property("amount").unwrap();
        let amounts: Vec<f64> = page
            .iter()
            .filter_map(|r| value(&ctx, amount, r).and_then(|a| a.parse().ok()))
            .collect();
        assert!(!amounts.is_empty() && amounts.len() == page.len());
        assert!(amounts.iter().all(|a| *a > 9999.5), "{amounts:?}");
    }

    #[test]
    fn rejects_what_hubspot_rejects() {
        let t = ObjectType::Deals;
        let schema = TypeSchema::builtin(t);
        let compile = |t, req: &SearchRequest| compile(&schema, t, req);
        let mut req = query(vec![], None, 200);
        req.after = Some("9900".into());
        assert!(compile(t, &req).is_err_and(|e| e.contains("capped")), "SR2");
        req.after = Some("9800".into());
        assert!(compile(t, &req).is_ok());
        assert!(compile(t, &query(vec![], None, 201)).is_err());
        let bad = Filter::new("hs_lastmodifieddate", Operator::Gte, "yesterday");
        assert!(compile(t, &query(vec![bad], None, 10)).is_err());
        let unknown = Filter::new("nope", Operator::Eq, "1");
        assert!(compile(t, &query(vec![unknown], None, 10)).is_err());
    }
}
