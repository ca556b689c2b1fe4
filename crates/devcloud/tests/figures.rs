//! The README's figures are generated, not typed: its figures section is what `scripts/figures.sh` wrote
//! (its fingerprint matches, it holds the four runs at full size), and the script's section passes this
//! check while a figure changed by hand fails it.

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

const BEGIN: &str = "<!-- figures:begin -->\n";
const END: &str = "<!-- figures:end sha256=";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The section's body, if its recorded fingerprint is the body's SHA-256; otherwise why not.
fn generated_body(readme: &str) -> Result<&str, String> {
    let start = readme
        .find(BEGIN)
        .ok_or("no `<!-- figures:begin -->` line")?
        + BEGIN.len();
    let end = readme[start..]
        .find(END)
        .ok_or("no `<!-- figures:end sha256=… -->` line")?
        + start;
    let body = &readme[start..end];
    let recorded = readme[end + END.len()..]
        .split(' ')
        .next()
        .unwrap_or_default();
    let actual = format!("{:x}", Sha256::digest(body.as_bytes()));
    if recorded != actual {
        return Err(format!(
            "the figures section was changed after scripts/figures.sh wrote it (sha256 {actual}, recorded {recorded}); run scripts/figures.sh again"
        ));
    }
    Ok(body)
}

const RUNS: [&str; 5] = [
    "#### Handler efficiency",
    "#### Chain benchmark",
    "#### Scale run",
    "#### Chaos suite",
    "#### Fuzzing",
];

/// `scripts/figures.sh --from outputs --readme readme`.
fn figures_from(outputs: &Path, readme: &Path) -> std::process::ExitStatus {
    Command::new("bash")
        .arg(repo().join("scripts/figures.sh"))
        .arg("--from")
        .arg(outputs)
        .arg("--readme")
        .arg(readme)
        .status()
        .expect("bash runs")
}

fn write(dir: &Path, name: &str, cmd: &str, out: &str) {
    std::fs::write(dir.join(format!("{name}.cmd")), cmd).expect("write cmd");
    std::fs::write(dir.join(format!("{name}.out")), out).expect("write out");
}

#[test]
fn the_scripts_section_passes_and_a_figure_typed_by_hand_fails() {
    let dir = tempfile::tempdir().expect("temp dir");
    let outputs = dir.path().join("outputs");
    std::fs::create_dir(&outputs).expect("outputs dir");
    write(
        &outputs,
        "efficiency",
        "cargo bench -p galleon --bench efficiency",
        "handler efficiency: galleon vs node\n\n| system | CPU per invocation (µs) |\n|---|---|\n| galleon | 24.7 |\n| reference | 49.0 |\n\nratios galleon/reference: CPU per invocation 0.50\n",
    );
    write(
        &outputs,
        "chain",
        "cargo bench -p devcloud --bench chain",
        "6 images × 3 regions: 6 ready in 10.6 s\n",
    );
    write(
        &outputs,
        "scale",
        "target/release/devcloud scale",
        "| figure | value |\n| --- | --- |\n| images ready / failed | 200 / 0 |\n",
    );
    write(
        &outputs,
        "chaos",
        "scripts/chaos.sh",
        "chaos kills: 52 handler kills, 40 runs ready\n",
    );
    write(
        &outputs,
        "fuzz",
        "scripts/fuzz.sh 60",
        "fuzz target manifest parser: 3607808 cases in 60.0 s, no failure\n",
    );
    let readme = dir.path().join("README.md");
    std::fs::write(
        &readme,
        "# Title\n\n## Figures\n\n<!-- figures:begin -->\nold\n<!-- figures:end sha256=0000000000000000000000000000000000000000000000000000000000000000 -->\n\n## After\n",
    )
    .expect("write readme");
    let status = figures_from(&outputs, &readme);
    assert!(status.success(), "scripts/figures.sh --from failed");
    let text = std::fs::read_to_string(&readme).expect("read readme");
    let body = generated_body(&text).unwrap_or_else(|why| panic!("{why}\n{text}"));
    for run in RUNS {
        assert!(body.contains(run), "{run} missing:\n{body}");
    }
    assert!(
        body.contains("| galleon | 24.7 |") && body.contains("`scripts/chaos.sh`"),
        "{body}"
    );
    assert!(
        text.starts_with("# Title\n") && text.ends_with("## After\n"),
        "the rest of the README changed:\n{text}"
    );
    let typed = text.replace("| galleon | 24.7 |", "| galleon | 14.7 |");
    let refused = generated_body(&typed).expect_err("a figure typed by hand");
    assert!(
        refused.contains("run scripts/figures.sh again"),
        "{refused}"
    );
    // A missing output is refused and the README is left as it was.
    std::fs::remove_file(outputs.join("chaos.out")).expect("remove");
    let status = figures_from(&outputs, &readme);
    assert!(!status.success());
    assert_eq!(std::fs::read_to_string(&readme).expect("read"), text);
}
