//! `rush demo` as a process: the sale runs, every invariant check passes, the journal
//! replays to the live state, the paced phase and the burst are both reported, and the plot
//! is written.

use std::process::Command;

mod support;

use support::RUSH;

#[test]
fn the_demo_passes_every_check_and_reports_the_paced_phase_and_the_burst() {
    let plot = std::env::temp_dir().join(format!("rush-demo-test-{}.png", std::process::id()));
    let _ = std::fs::remove_file(&plot);
    let output = Command::new(RUSH)
        .args(["demo", "--shards", "2", "--plot"])
        .arg(&plot)
        .output()
        .expect("run rush demo");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "exit {:?}\n{stdout}\n{stderr}", output.status);
    // Every check passes, and there are as many as the demo makes.
    let passes = stdout.lines().filter(|line| line.trim_start().starts_with("[PASS]")).count();
    assert!(!stdout.contains("[FAIL]"), "{stdout}");
    assert_eq!(passes, 8, "{stdout}");
    assert!(stdout.contains("[PASS] journal replay: "), "{stdout}");
    // The paced phase reports both series, in µs, before the burst.
    let paced = stdout.find("paced: one request at a time, 2000 a second").expect("paced phase");
    let reserve = stdout.find("  RESERVE (a hold for a new buyer").expect("paced RESERVE");
    let ping = stdout.find("  PING (the floor").expect("paced PING");
    let burst = stdout.find("burst: each RESERVE of the sale").expect("burst");
    assert!(paced < reserve && reserve < ping && ping < burst, "{stdout}");
    let png = std::fs::read(&plot).expect("the plot was written");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    std::fs::remove_file(&plot).expect("remove the plot");
}
