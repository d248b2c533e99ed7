//! The programs a session streamed: the verified text of each (the first, one after a resume,
//! one after each re-registration), its hash and the registration it was compiled for, so QA
//! can re-check from the journal alone what actually ran. Append-only; each run names the
//! program recorded last before it began (`runs.program_seq`).

use rusqlite::params;
use sha2::{Digest, Sha256};

use super::{Journal, RunId, StoreError};

/// Why a program was compiled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgramReason {
    /// The session's first program.
    First,
    /// The dots still planned when a session was resumed.
    Resume,
    /// The dots still planned, recompiled for the head's new registration after a drift.
    Reregistered,
}

impl ProgramReason {
    pub fn as_str(self) -> &'static str {
        match self {
            ProgramReason::First => "first",
            ProgramReason::Resume => "resume",
            ProgramReason::Reregistered => "reregistered",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [ProgramReason::First, ProgramReason::Resume, ProgramReason::Reregistered].into_iter().find(|r| r.as_str() == s)
    }
}

/// One recorded program.
#[derive(Debug, Clone, PartialEq)]
pub struct ProgramRecord {
    /// 1, 2, ... in the order recorded.
    pub seq: i64,
    pub reason: ProgramReason,
    /// Where the `.nc` file was written.
    pub path: String,
    /// SHA-256 of `text`, lowercase hex.
    pub sha256: String,
    pub lines: usize,
    pub dots: usize,
    pub max_depth_mm: f64,
    /// The head's registration the program was compiled for (`base_from_head`), as JSON.
    pub base_from_head_json: String,
    /// The verified text, as streamed.
    pub text: String,
}

/// SHA-256 of a program's text, lowercase hex.
pub fn program_sha256(text: &str) -> String {
    Sha256::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// What [`Journal::record_program`] is given.
#[derive(Debug, Clone, Copy)]
pub struct NewProgram<'a> {
    pub reason: ProgramReason,
    pub path: &'a str,
    pub lines: usize,
    pub dots: usize,
    pub max_depth_mm: f64,
    pub base_from_head_json: &'a str,
    pub text: &'a str,
}

impl Journal {
    /// Records a program before the run that streams it; returns its sequence number.
    pub fn record_program(&mut self, p: &NewProgram<'_>) -> Result<i64, StoreError> {
        let hash = program_sha256(p.text);
        let mut seq = 0;
        self.commit_with(|tx| {
            tx.execute(
                "INSERT INTO programs(recorded_utc, reason, path, sha256, lines, dots, max_depth_mm, \
                 base_from_head_json, text) \
                 VALUES (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    p.reason.as_str(),
                    p.path,
                    hash,
                    p.lines as i64,
                    p.dots as i64,
                    p.max_depth_mm,
                    p.base_from_head_json,
                    p.text
                ],
            )
            .map_err(StoreError::sql("recording a program"))?;
            seq = tx.last_insert_rowid();
            Ok(())
        })?;
        Ok(seq)
    }

    /// Every recorded program, in order.
    pub fn programs(&self) -> Result<Vec<ProgramRecord>, StoreError> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT seq, reason, path, sha256, lines, dots, max_depth_mm, base_from_head_json, text \
                 FROM programs ORDER BY seq",
            )
            .map_err(StoreError::sql("listing programs"))?;
        let rows = st
            .query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, i64>(5)?,
                    r.get::<_, f64>(6)?,
                    r.get::<_, String>(7)?,
                    r.get::<_, String>(8)?,
                ))
            })
            .map_err(StoreError::sql("listing programs"))?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, reason, path, sha256, lines, dots, max_depth_mm, base_from_head_json, text) =
                row.map_err(StoreError::sql("listing programs"))?;
            let reason = ProgramReason::parse(&reason).ok_or_else(|| StoreError::Inconsistent {
                path: self.path().to_path_buf(),
                detail: format!("program {seq} has the unknown reason {reason:?}"),
            })?;
            out.push(ProgramRecord {
                seq,
                reason,
                path,
                sha256,
                lines: lines.max(0) as usize,
                dots: dots.max(0) as usize,
                max_depth_mm,
                base_from_head_json,
                text,
            });
        }
        Ok(out)
    }

    /// The program a run streamed (`None` for a run nobody recorded a program for).
    pub fn program_of_run(&self, run: RunId) -> Result<Option<i64>, StoreError> {
        self.conn
            .query_row("SELECT program_seq FROM runs WHERE run_id = ?1", params![run.0], |r| r.get::<_, Option<i64>>(0))
            .map_err(StoreError::sql("reading a run's program"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::tests::meta;

    #[test]
    fn programs_are_kept_with_their_hash_and_each_run_names_the_one_it_streamed() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("j.sqlite");
        let mut j = Journal::create(&path, &meta()).expect("create");
        let r0 = j.begin_run().expect("run");
        let first = NewProgram {
            reason: ProgramReason::First,
            path: "program.nc",
            lines: 3,
            dots: 1,
            max_depth_mm: 1.0,
            base_from_head_json: "{}",
            text: "G21 G90 G94\nG1 X1\nM2\n",
        };
        let s1 = j.record_program(&first).expect("record");
        let r1 = j.begin_run().expect("run");
        let s2 = j
            .record_program(&NewProgram { reason: ProgramReason::Reregistered, path: "program.rereg-2.nc", ..first })
            .expect("record");
        let r2 = j.begin_run().expect("run");
        assert_eq!(j.program_of_run(r0).expect("read"), None, "a run before any program names none");
        assert_eq!(j.program_of_run(r1).expect("read"), Some(s1));
        assert_eq!(j.program_of_run(r2).expect("read"), Some(s2));
        drop(j);
        let j = Journal::open(&path).expect("open");
        let p = j.programs().expect("programs");
        assert_eq!(p.len(), 2);
        assert_eq!(p[1].reason, ProgramReason::Reregistered);
        assert_eq!(p[0].text, first.text);
        assert_eq!(p[0].sha256, program_sha256(first.text));
        // sha256 of "abc", the FIPS 180-2 test vector.
        assert_eq!(program_sha256("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        let changed = j.conn.execute("UPDATE programs SET text = 'G0 Z-5'", []);
        assert!(changed.is_err(), "programs are append-only");
    }
}
