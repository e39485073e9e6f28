//! What `rush bench` prints and writes about a run: the summary and the JSON document (the
//! shared pieces, and the `.hgrm`, `.hlog` and plot files, are in [`crate::measure`]).

use std::io::{self, Write};

use serde_json::{json, Map, Value};

use super::check::Check;
use super::driver::{BenchCounts, OPERATIONS};
use crate::measure::report::{
    by_op_json, code_map, latency_json, percentiles_json, write_by_op, write_latency, write_results,
};
use crate::measure::tally::Merged;

/// The figures of a finished run that the summary and the JSON show.
#[derive(Debug)]
pub struct Report<'a> {
    pub settings: Map<String, Value>,
    /// Every worker's measurements, merged.
    pub merged: &'a Merged<BenchCounts>,
    pub percentiles: &'a [f64],
    /// Open loop with a duration: the requests the plan called for in the measured phase.
    pub planned: Option<u64>,
    pub corrected: bool,
    pub checks: Option<&'a [Check]>,
}

impl Report<'_> {
    pub fn to_json(&self) -> Value {
        let (tally, counts) = (&self.merged.tally, &self.merged.counts);
        let latency = latency_json(&tally.latency);
        let percentiles = percentiles_json(&tally.latency, self.percentiles);
        let by_op = by_op_json(&tally.named_operations(&OPERATIONS));
        let mut document = self.settings.clone();
        document.insert("coordinated_omission_corrected".into(), json!(self.corrected));
        document.insert("sent".into(), json!(tally.sent));
        document.insert("planned".into(), json!(self.planned));
        document.insert("completed".into(), json!(tally.completed));
        document.insert("unanswered".into(), json!(tally.unanswered));
        document.insert("warmup_sent".into(), json!(counts.sent_warmup));
        document.insert("warmup_completed".into(), json!(counts.completed_warmup));
        document.insert("elapsed_s".into(), json!(self.merged.elapsed.as_secs_f64()));
        document.insert("throughput_rps".into(), json!(self.merged.throughput()));
        document.insert("results".into(), Value::Object(code_map(&tally.codes)));
        document.insert("duplicate_of".into(), Value::Object(code_map(&tally.duplicate_of)));
        document.insert("latency_us".into(), latency);
        document.insert("percentiles".into(), percentiles);
        document.insert("by_op".into(), by_op);
        document.insert("abandoned_follow_ups".into(), json!(counts.abandoned_follow_ups));
        match self.checks {
            Some(checks) => {
                let list: Vec<Value> = checks
                    .iter()
                    .map(|c| json!({"name": c.name, "pass": c.pass, "detail": c.detail}))
                    .collect();
                document.insert("checks".into(), Value::Array(list));
                document.insert("checks_passed".into(), json!(checks.iter().all(|c| c.pass)));
            }
            None => {
                document.insert("checks".into(), Value::Null);
                document.insert("checks_passed".into(), Value::Null);
            }
        }
        document.insert("errors".into(), json!(tally.errors));
        Value::Object(document)
    }

    /// The human summary (the header lines come from the caller).
    pub fn write_summary(&self, out: &mut impl Write) -> io::Result<()> {
        let (tally, counts) = (&self.merged.tally, &self.merged.counts);
        writeln!(
            out,
            "Requests: {} sent, {} completed, {} unanswered in {:.2} s: {:.1} req/s",
            tally.sent,
            tally.completed,
            tally.unanswered,
            self.merged.elapsed.as_secs_f64(),
            self.merged.throughput()
        )?;
        if let Some(planned) = self.planned.filter(|&planned| tally.sent * 100 < planned * 99) {
            writeln!(
                out,
                "Note: the open loop fell behind its plan: {} of {planned} planned requests were \
                 sent (windows full: the server is saturated, or raise -P / -c); the latencies \
                 include that waiting",
                tally.sent
            )?;
        }
        if counts.sent_warmup > 0 {
            writeln!(
                out,
                "Warm-up: {} sent, {} completed (discarded)",
                counts.sent_warmup, counts.completed_warmup
            )?;
        }
        write_results(out, &tally.codes, &tally.duplicate_of)?;
        if self.corrected {
            writeln!(
                out,
                "Latency (µs, from each request's intended send time: corrected for \
                 coordinated omission):"
            )?;
        } else {
            writeln!(
                out,
                "Latency (µs, closed loop: NOT corrected for coordinated omission; from when \
                 each request was sent):"
            )?;
        }
        write_latency(out, &tally.latency, self.percentiles)?;
        write_by_op(out, &tally.named_operations(&OPERATIONS))?;
        if counts.abandoned_follow_ups > 0 {
            writeln!(
                out,
                "{} follow-ups (CONFIRM/CANCEL) were still queued at the end and not sent",
                counts.abandoned_follow_ups
            )?;
        }
        for error in &tally.errors {
            writeln!(out, "error: {error}")?;
        }
        if let Some(checks) = self.checks {
            writeln!(out, "Checks:")?;
            for check in checks {
                let verdict = if check.pass { "PASS" } else { "FAIL" };
                writeln!(out, "  {verdict}  {}: {}", check.name, check.detail)?;
            }
        }
        Ok(())
    }
}
