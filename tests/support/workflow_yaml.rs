//! Workflow files written by tests: steps of the `command` task kind.

/// A step running `script` with `sh -c` after `needs`.
pub fn sh(id: &str, needs: &[&str], script: &str) -> String {
    format!(
        "  - id: {id}\n    uses: command\n    needs: [{}]\n    with:\n      shell: true\n      argv: [{}]\n",
        needs.join(", "),
        serde_json::to_string(script).unwrap()
    )
}

/// A workflow named `add-model` of `steps`.
pub fn workflow(steps: &[String]) -> String {
    format!("name: add-model\nsteps:\n{}", steps.concat())
}
