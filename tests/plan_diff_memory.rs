//! `plan --diff` on big files: the diff is computed in memory proportional
//! to the files, not to the product of their lengths (a hand-written LCS
//! table needed 20,000² cells here: 1.6 GB).

use onboard_test_support::counting_alloc;

#[global_allocator]
static GLOBAL: counting_alloc::Counting = counting_alloc::Counting;

#[test]
fn a_20000_line_diff_stays_in_bounded_memory() {
    let lines = 20_000;
    let before: String = (0..lines).map(|i| format!("row {i}\n")).collect();
    // Every 100th line changed: 200 hunks, the rest shared.
    let after: String = (0..lines)
        .map(|i| {
            if i % 100 == 50 {
                format!("row {i} changed\n")
            } else {
                format!("row {i}\n")
            }
        })
        .collect();
    let mut diff = String::new();
    let used = counting_alloc::peak_during(|| {
        diff = onboard::docs::diff::unified("big.md", Some(&before), Some(&after));
    });

    let removed = diff.lines().filter(|l| l.starts_with("-row")).count();
    let added = diff.lines().filter(|l| l.starts_with("+row")).count();
    assert_eq!(
        (removed, added),
        (200, 200),
        "{}",
        &diff[..diff.len().min(500)]
    );
    assert_eq!(diff.lines().filter(|l| l.starts_with("@@ ")).count(), 200);
    // The files are ~0.2 MB each; an LCS table would be 1.6 GB.
    assert!(
        used < 32 << 20,
        "diffing two 20,000-line files took {} MiB at peak",
        used >> 20
    );
}
