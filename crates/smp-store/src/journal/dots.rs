//! The plan's dots and their states: inserted once, moved only along the legal transitions
//! (each committed before the call returns, with an append-only history), uncertain dots
//! resolved only with a reason, and the queries a resume and a report need.

use std::collections::BTreeMap;

use rusqlite::{params, OptionalExtension, Transaction};
use smp_core::plan::{DotState, SessionPlan, Zone};

use super::{DotEvent, DotRecord, Journal, StoreError};
use crate::transitions::{is_legal_transition, needs_reason, ALL_STATES};

fn zone_str(zone: Zone) -> &'static str {
    zone.as_str()
}

fn parse_zone(s: &str) -> Result<Zone, StoreError> {
    [Zone::Hairline, Zone::Frontal, Zone::MidScalp, Zone::Crown, Zone::Temple, Zone::Scar]
        .into_iter()
        .find(|z| zone_str(*z) == s)
        .ok_or_else(|| StoreError::UnknownValue { what: "zone", value: s.to_string() })
}

fn parse_state(s: &str) -> Result<DotState, StoreError> {
    DotState::parse(s).ok_or_else(|| StoreError::UnknownValue { what: "dot state", value: s.to_string() })
}

impl Journal {
    /// Inserts every dot of the plan in state `planned`, in the plan's order, in one
    /// transaction. A journal records one plan: a second call is refused.
    pub fn insert_plan(&mut self, plan: &SessionPlan) -> Result<(), StoreError> {
        if plan.session != self.session {
            return Err(StoreError::SessionMismatch { plan: plan.session, journal: self.session });
        }
        let existing: usize = self
            .conn
            .query_row("SELECT COUNT(*) FROM dots", [], |r| r.get(0))
            .map_err(StoreError::sql("counting dots"))?;
        if existing > 0 {
            return Err(StoreError::PlanAlreadyInserted { dots: existing });
        }
        let mut seen = std::collections::HashSet::new();
        for d in &plan.dots {
            if !seen.insert(d.id) {
                return Err(StoreError::DuplicateDot { dot_id: d.id });
            }
        }
        self.commit_with(|tx| {
            let mut dot = tx
                .prepare_cached(
                    "INSERT INTO dots(dot_id, plan_order, x_mm, y_mm, z_mm, layer, zone, depth_mm, state, updated_at_s) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'planned', 0.0)",
                )
                .map_err(StoreError::sql("preparing the dot insert"))?;
            let mut event = tx
                .prepare_cached(
                    "INSERT INTO dot_events(dot_id, from_state, to_state, at_s) VALUES (?1, NULL, 'planned', 0.0)",
                )
                .map_err(StoreError::sql("preparing the event insert"))?;
            for (order, d) in plan.dots.iter().enumerate() {
                dot.execute(params![d.id, order as i64, d.x_mm, d.y_mm, d.z_mm, d.layer, zone_str(d.zone), d.depth_mm])
                    .map_err(StoreError::sql("inserting a dot"))?;
                event.execute(params![d.id]).map_err(StoreError::sql("inserting a dot event"))?;
            }
            Ok(())
        })
    }

    /// Moves one dot to `state` and commits durably before returning.
    pub fn set_dot_state(&mut self, dot_id: u32, state: DotState, at_s: f64) -> Result<(), StoreError> {
        self.set_dot_states(&[(dot_id, state)], at_s)
    }

    /// Applies several transitions in one durable commit (one fsync), in order. All or none:
    /// if any is illegal, nothing is written and the error names that dot. The executor uses
    /// this to journal `sent` for every plunge it is about to queue at once.
    pub fn set_dot_states(&mut self, changes: &[(u32, DotState)], at_s: f64) -> Result<(), StoreError> {
        for &(dot_id, _) in changes {
            if !at_s.is_finite() {
                return Err(StoreError::BadTime { dot_id, at_s });
            }
        }
        self.commit_with(|tx| {
            for &(dot_id, to) in changes {
                apply_transition(tx, dot_id, to, at_s, None)?;
            }
            Ok(())
        })
    }

    /// Resolves an `uncertain` dot after a fault, as `executed` (the camera or the operator saw
    /// the dot) or `skipped` (it is not there, and will not be redone in this session).
    pub fn resolve_uncertain(&mut self, dot_id: u32, to: DotState, reason: &str, at_s: f64) -> Result<(), StoreError> {
        if !at_s.is_finite() {
            return Err(StoreError::BadTime { dot_id, at_s });
        }
        if reason.trim().is_empty() {
            return Err(StoreError::ReasonRequired { dot_id });
        }
        let from = self.dot_state(dot_id)?;
        if from != DotState::Uncertain || !needs_reason(from, to) {
            return Err(StoreError::IllegalTransition {
                dot_id,
                from: from.as_str(),
                to: to.as_str(),
                hint: "only an uncertain dot is resolved, and only to executed or skipped",
            });
        }
        self.commit_with(|tx| apply_transition(tx, dot_id, to, at_s, Some(reason)))
    }

    /// Dots a run left `sent` or `accepted` (it ended without recording their outcome: the
    /// host process died, or the machine lost power) become `uncertain` with `reason`, in one
    /// commit, so that they take the resolution path of every uncertain dot (look, then
    /// resolve) instead of staying stranded or being resent blindly. Returns them, in plan
    /// order. Call it only when no run of this session is in flight.
    pub fn unfinished_to_uncertain(&mut self, reason: &str, at_s: f64) -> Result<Vec<u32>, StoreError> {
        let mut dots = self.dots_in_state(DotState::Sent)?;
        dots.extend(self.dots_in_state(DotState::Accepted)?);
        if dots.is_empty() {
            return Ok(dots);
        }
        for &dot_id in &dots {
            if !at_s.is_finite() {
                return Err(StoreError::BadTime { dot_id, at_s });
            }
        }
        let plan_order: std::collections::BTreeMap<u32, u32> =
            self.dots()?.iter().map(|d| (d.dot_id, d.plan_order)).collect();
        dots.sort_by_key(|d| plan_order.get(d).copied().unwrap_or(u32::MAX));
        self.commit_with(|tx| {
            for &dot_id in &dots {
                apply_transition(tx, dot_id, DotState::Uncertain, at_s, Some(reason))?;
            }
            Ok(())
        })?;
        Ok(dots)
    }

    /// Resolves several `uncertain` dots in one durable commit, all or none: if any of them is
    /// not uncertain (or the target is not `executed`/`skipped`), nothing is written and the
    /// error names that dot. The operator resolves a batch of sites seen together this way.
    pub fn resolve_uncertain_many(
        &mut self,
        dot_ids: &[u32],
        to: DotState,
        reason: &str,
        at_s: f64,
    ) -> Result<(), StoreError> {
        for &dot_id in dot_ids {
            if !at_s.is_finite() {
                return Err(StoreError::BadTime { dot_id, at_s });
            }
            if reason.trim().is_empty() {
                return Err(StoreError::ReasonRequired { dot_id });
            }
            if !needs_reason(DotState::Uncertain, to) {
                return Err(StoreError::IllegalTransition {
                    dot_id,
                    from: DotState::Uncertain.as_str(),
                    to: to.as_str(),
                    hint: "only an uncertain dot is resolved, and only to executed or skipped",
                });
            }
        }
        self.commit_with(|tx| {
            for &dot_id in dot_ids {
                let from: Option<String> = tx
                    .prepare_cached("SELECT state FROM dots WHERE dot_id = ?1")
                    .and_then(|mut st| st.query_row(params![dot_id], |r| r.get(0)).optional())
                    .map_err(StoreError::sql("reading a dot state"))?;
                let from = parse_state(&from.ok_or(StoreError::UnknownDot { dot_id })?)?;
                if from != DotState::Uncertain {
                    return Err(StoreError::IllegalTransition {
                        dot_id,
                        from: from.as_str(),
                        to: to.as_str(),
                        hint: "only an uncertain dot is resolved, and only to executed or skipped",
                    });
                }
                apply_transition(tx, dot_id, to, at_s, Some(reason))?;
            }
            Ok(())
        })
    }

    /// Current state of one dot.
    pub fn dot_state(&self, dot_id: u32) -> Result<DotState, StoreError> {
        let s: Option<String> = self
            .conn
            .prepare_cached("SELECT state FROM dots WHERE dot_id = ?1")
            .and_then(|mut st| st.query_row(params![dot_id], |r| r.get(0)).optional())
            .map_err(StoreError::sql("reading a dot state"))?;
        parse_state(&s.ok_or(StoreError::UnknownDot { dot_id })?)
    }

    /// Number of dots in each state; every state is present, with 0 when no dot is in it.
    pub fn state_counts(&self) -> Result<BTreeMap<DotState, usize>, StoreError> {
        let mut counts: BTreeMap<DotState, usize> = ALL_STATES.iter().map(|s| (*s, 0)).collect();
        let mut st = self
            .conn
            .prepare_cached("SELECT state, COUNT(*) FROM dots GROUP BY state")
            .map_err(StoreError::sql("counting states"))?;
        let rows = st
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, usize>(1)?)))
            .map_err(StoreError::sql("counting states"))?;
        for row in rows {
            let (s, n) = row.map_err(StoreError::sql("counting states"))?;
            counts.insert(parse_state(&s)?, n);
        }
        Ok(counts)
    }

    /// Ids of the dots in state `s`, in plan order.
    pub fn dots_in_state(&self, s: DotState) -> Result<Vec<u32>, StoreError> {
        let mut st = self
            .conn
            .prepare_cached("SELECT dot_id FROM dots WHERE state = ?1 ORDER BY plan_order")
            .map_err(StoreError::sql("listing dots by state"))?;
        let rows = st.query_map(params![s.as_str()], |r| r.get(0)).map_err(StoreError::sql("listing dots by state"))?;
        rows.collect::<Result<Vec<u32>, _>>().map_err(StoreError::sql("listing dots by state"))
    }

    /// Dots a resumed session may still plunge: those still `planned`, in plan order. Dots
    /// that are `sent`, `accepted` or `uncertain` are deliberately not candidates: they may be
    /// in the skin and must be resolved by looking first.
    pub fn resume_candidates(&self) -> Result<Vec<u32>, StoreError> {
        self.dots_in_state(DotState::Planned)
    }

    /// Every dot, in plan order.
    pub fn dots(&self) -> Result<Vec<DotRecord>, StoreError> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT dot_id, plan_order, x_mm, y_mm, z_mm, layer, zone, depth_mm, state, updated_at_s \
                 FROM dots ORDER BY plan_order",
            )
            .map_err(StoreError::sql("listing dots"))?;
        let rows = st
            .query_map([], |r| {
                Ok((
                    r.get::<_, u32>(0)?,
                    r.get::<_, u32>(1)?,
                    [r.get::<_, f64>(2)?, r.get::<_, f64>(3)?, r.get::<_, f64>(4)?],
                    r.get::<_, u32>(5)?,
                    r.get::<_, String>(6)?,
                    r.get::<_, f64>(7)?,
                    r.get::<_, String>(8)?,
                    r.get::<_, f64>(9)?,
                ))
            })
            .map_err(StoreError::sql("listing dots"))?;
        let mut out = Vec::new();
        for row in rows {
            let (dot_id, plan_order, position_head_mm, layer, zone, depth_mm, state, updated_at_s) =
                row.map_err(StoreError::sql("listing dots"))?;
            out.push(DotRecord {
                dot_id,
                plan_order,
                position_head_mm,
                layer,
                zone: parse_zone(&zone)?,
                depth_mm,
                state: parse_state(&state)?,
                updated_at_s,
            });
        }
        Ok(out)
    }

    /// The state history, oldest first; of one dot, or of all when `dot_id` is `None`.
    pub fn dot_events(&self, dot_id: Option<u32>) -> Result<Vec<DotEvent>, StoreError> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT seq, dot_id, from_state, to_state, at_s, reason FROM dot_events \
                 WHERE ?1 IS NULL OR dot_id = ?1 ORDER BY seq",
            )
            .map_err(StoreError::sql("reading dot events"))?;
        let rows = st
            .query_map(params![dot_id], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, u32>(1)?,
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, f64>(4)?,
                    r.get::<_, Option<String>>(5)?,
                ))
            })
            .map_err(StoreError::sql("reading dot events"))?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, dot_id, from, to, at_s, reason) = row.map_err(StoreError::sql("reading dot events"))?;
            out.push(DotEvent {
                seq,
                dot_id,
                from: from.as_deref().map(parse_state).transpose()?,
                to: parse_state(&to)?,
                at_s,
                reason,
            });
        }
        Ok(out)
    }
}

fn apply_transition(
    tx: &Transaction<'_>,
    dot_id: u32,
    to: DotState,
    at_s: f64,
    reason: Option<&str>,
) -> Result<(), StoreError> {
    let from: Option<String> = tx
        .prepare_cached("SELECT state FROM dots WHERE dot_id = ?1")
        .and_then(|mut st| st.query_row(params![dot_id], |r| r.get(0)).optional())
        .map_err(StoreError::sql("reading a dot state"))?;
    let from = parse_state(&from.ok_or(StoreError::UnknownDot { dot_id })?)?;
    if !is_legal_transition(from, to) {
        return Err(StoreError::IllegalTransition {
            dot_id,
            from: from.as_str(),
            to: to.as_str(),
            hint: hint(from, to),
        });
    }
    if needs_reason(from, to) && reason.is_none() {
        return Err(StoreError::IllegalTransition {
            dot_id,
            from: from.as_str(),
            to: to.as_str(),
            hint: "an uncertain dot is resolved with Journal::resolve_uncertain and a reason",
        });
    }
    tx.prepare_cached("UPDATE dots SET state = ?2, updated_at_s = ?3 WHERE dot_id = ?1")
        .and_then(|mut st| st.execute(params![dot_id, to.as_str(), at_s]))
        .map_err(StoreError::sql("updating a dot state"))?;
    tx.prepare_cached("INSERT INTO dot_events(dot_id, from_state, to_state, at_s, reason) VALUES (?1, ?2, ?3, ?4, ?5)")
        .and_then(|mut st| st.execute(params![dot_id, from.as_str(), to.as_str(), at_s, reason]))
        .map_err(StoreError::sql("appending a dot event"))?;
    Ok(())
}

/// Why a transition is refused, in words an operator can act on.
fn hint(from: DotState, to: DotState) -> &'static str {
    use DotState::*;
    match (from, to) {
        (a, b) if a == b => "the dot is already in that state (a repeated send would tattoo it twice)",
        (Executed | Verified, Sent) => "the dot was already executed; it must never be plunged again",
        (Uncertain, Sent) => "the dot may already be in the skin; resolve it by looking, never by resending",
        (Sent | Accepted, Sent) => "the dot is already in flight",
        (_, Planned) => "states never move back to planned",
        (Skipped, _) => "a skipped dot stays skipped in this session",
        _ => "that transition is not in the dot lifecycle",
    }
}
