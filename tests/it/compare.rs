//! `opsdeck compare` and `GET /v1/compare`: two real runs of real processes, stage by stage.

use serde_json::Value;

use crate::support::TestWorkspace;

const PIPELINE: &str = r#"[pipeline]
name = "etl"
[pipeline.retry]
max_attempts = 1
[[stage]]
id = "extract"
kind = "command"
command = ["sh", "-c", "cat data.json"]
[[stage]]
id = "transform"
kind = "command"
needs = ["extract"]
command = ["sh", "-c", "if [ -e slow ]; then sleep 0.4; fi; echo '{\"ok\": true}'"]
[[stage]]
id = "load"
kind = "command"
needs = ["transform"]
command = ["sh", "-c", "test ! -e broken && echo '{\"loaded\": 1}'"]
"#;

fn run(ws: &TestWorkspace) -> i64 {
    let out = ws.run(&["run", "etl", "--json"]);
    let v: Value =
        serde_json::from_str(&out.stdout()).unwrap_or_else(|e| panic!("{e}: {}", out.stdout()));
    v["id"].as_i64().unwrap()
}

#[test]
fn compare_tells_same_changed_slower_and_failed_stages_apart_and_gates_on_regressions() {
    let ws = TestWorkspace::new();
    ws.pipeline("etl", PIPELINE);
    ws.write("data.json", r#"{"rows": 3, "items": [{"sku": "a"}]}"#);
    let base = run(&ws);
    let same = run(&ws);
    ws.write(
        "data.json",
        r#"{"rows": 4, "items": [{"sku": "a"}, {"sku": "b"}]}"#,
    );
    ws.write("slow", "");
    let slower = run(&ws);
    std::fs::remove_file(ws.path("slow")).unwrap();
    ws.write("data.json", r#"{"rows": 3, "items": [{"sku": "a"}]}"#);
    ws.write("broken", "");
    let failed = run(&ws);

    // Nothing changed: exit 0, every stage `same`.
    let out = ws.run(&["compare", &base.to_string(), &same.to_string(), "--json"]);
    out.expect_code(0);
    let v: Value = serde_json::from_str(&out.stdout()).unwrap();
    assert_eq!(v["verdict"], "same", "{v}");

    // Output changed in extract (with the paths), transform slower: regressed, exit 1.
    let out = ws.run(&["compare", &base.to_string(), &slower.to_string(), "--json"]);
    out.expect_code(1);
    let v: Value = serde_json::from_str(&out.stdout()).unwrap();
    assert_eq!(v["verdict"], "regressed");
    let stage = |id: &str| {
        v["stages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == id)
            .unwrap()
            .clone()
    };
    let extract = stage("extract");
    assert_eq!(
        (
            extract["verdict"].as_str(),
            extract["output_equal"].as_bool()
        ),
        (Some("changed"), Some(false))
    );
    let paths: Vec<&str> = extract["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["path"].as_str().unwrap())
        .collect();
    assert!(
        paths.contains(&"$.rows") && paths.contains(&"$.items[1]"),
        "{paths:?}"
    );
    let rows = extract["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["path"] == "$.rows")
        .unwrap();
    assert_eq!(
        (rows["old"].as_i64(), rows["new"].as_i64()),
        (Some(3), Some(4))
    );
    let transform = stage("transform");
    assert_eq!(transform["verdict"], "regressed", "{transform}");
    assert!(
        transform["delta_ms"].as_i64().unwrap() >= 300,
        "{transform}"
    );
    assert!(
        transform["note"].as_str().unwrap().starts_with("slower by"),
        "{transform}"
    );
    assert_eq!(stage("load")["verdict"], "same");

    // A stage that failed where it succeeded: regressed, said in words.
    let out = ws.run(&["compare", &base.to_string(), &failed.to_string()]);
    out.expect_code(1);
    let text = out.stdout();
    assert!(
        text.contains("regressed: load: succeeded before, failed now"),
        "{text}"
    );
    assert!(
        text.contains(&format!("run {failed} against run {base}")),
        "{text}"
    );

    // Runs of two pipelines: a sentence and exit 2, not a comparison of nothing.
    ws.pipeline(
        "other",
        "[pipeline]\nname = \"other\"\n[[stage]]\nid = \"x\"\nkind = \"simulate\"\n",
    );
    ws.run(&["run", "other"]).expect_code(0);
    let other = ws.run(&["runs", "--json"]).json()[0]["id"]
        .as_i64()
        .unwrap();
    ws.run(&["compare", &base.to_string(), &other.to_string()])
        .expect_error(2, "compare two runs of one pipeline");

    // A run that does not exist: a sentence and exit 2.
    let out = ws.run(&["compare", &base.to_string(), "999"]);
    out.expect_error(2, "there is no run 999");
}

#[test]
fn the_pipeline_says_how_to_match_items_and_what_differences_count() {
    let ws = TestWorkspace::new();
    ws.pipeline(
        "etl",
        r#"[pipeline]
name = "etl"
[pipeline.compare]
key = { extract = "sku" }
tolerance = 0.1
slower_pct = 1000
[[stage]]
id = "extract"
kind = "command"
command = ["sh", "-c", "cat data.json"]
"#,
    );
    ws.write(
        "data.json",
        r#"{"score": 0.91, "items": [{"sku": "a", "price": 1}, {"sku": "b", "price": 2}]}"#,
    );
    let base = run(&ws);
    // An item inserted at the top, and a score that moved less than the tolerance.
    ws.write(
        "data.json",
        r#"{"score": 0.95, "items": [{"sku": "z", "price": 9}, {"sku": "a", "price": 1}, {"sku": "b", "price": 3}]}"#,
    );
    let candidate = run(&ws);
    let out = ws.run(&[
        "compare",
        &base.to_string(),
        &candidate.to_string(),
        "--json",
    ]);
    out.expect_code(0);
    let v: Value = serde_json::from_str(&out.stdout()).unwrap();
    let changes: Vec<(String, String)> = v["stages"][0]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["path"].as_str().unwrap().to_string(),
                c["kind"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        changes,
        vec![
            (
                r#"$.items["sku=b"].price"#.to_string(),
                "changed".to_string()
            ),
            (r#"$.items["sku=z"]"#.to_string(), "added".to_string()),
        ],
        "matched by sku, not by position; the score is within tolerance"
    );
    // A mistake in the settings names its place.
    ws.pipeline(
        "bad",
        "[pipeline]\nname = \"bad\"\n[pipeline.compare]\ntolerance = -1\n[[stage]]\nid = \"a\"\nkind = \"simulate\"\n",
    );
    let out = ws.run(&["validate", ws.path("pipelines/bad.toml").to_str().unwrap()]);
    out.expect_code(2);
    assert!(
        out.stdout()
            .contains("bad.toml:4:13: `tolerance` in [pipeline.compare] must be a number"),
        "{}",
        out.stdout()
    );
}
