//! deploy/prometheus/apilb.rules.yaml and deploy/grafana/apilb.json: the alerts pass
//! `promtool check rules` and their unit tests (`promtool test rules`, which fire and silence
//! every alert), every dashboard query passes `promtool check rules` as a recording rule, and
//! every metric either names is a family apilb exports.
//!
//! Run: `cargo test --test it alerts` (needs `promtool`: `apt-get install prometheus`; without
//! it the promtool parts skip, or fail under `APILB_REQUIRE_PRIVILEGED=1`).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use serde_json::Value as Json;
use serde_yaml::Value as Yaml;

use crate::support::*;

const RULES: &str = "deploy/prometheus/apilb.rules.yaml";
const RULE_TESTS: &str = "deploy/prometheus/apilb.rules.test.yaml";
const DASHBOARD: &str = "deploy/grafana/apilb.json";

/// `promtool ARGS` in `dir`: whether it succeeded, and what it printed.
fn promtool(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run promtool");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), report)
}

fn yaml(rel: &str) -> Yaml {
    let text = std::fs::read_to_string(repo_path(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn dashboard() -> Json {
    let text = std::fs::read_to_string(repo_path(DASHBOARD)).expect("read dashboard");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{DASHBOARD}: {e}"))
}

fn str_of<'a>(v: &'a Yaml, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Yaml::as_str)
}

/// The alerting rules: name and rule.
fn alerts() -> Vec<(String, Yaml)> {
    let rules = yaml(RULES);
    let groups = rules["groups"].as_sequence().expect("groups");
    groups
        .iter()
        .flat_map(|g| g["rules"].as_sequence().expect("rules").clone())
        .map(|r| (str_of(&r, "alert").expect("alert name").to_owned(), r))
        .collect()
}

/// Every (title, expr) of the dashboard's panels (rows' nested panels included).
fn panel_queries(d: &Json) -> Vec<(String, String)> {
    fn walk(panels: &[Json], out: &mut Vec<(String, String)>) {
        for p in panels {
            let title = p["title"].as_str().unwrap_or("?").to_owned();
            for t in p["targets"].as_array().into_iter().flatten() {
                let expr = t["expr"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{title}: no expr"));
                out.push((title.clone(), expr.to_owned()));
            }
            if let Some(nested) = p["panels"].as_array() {
                walk(nested, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(d["panels"].as_array().expect("panels"), &mut out);
    out
}

/// A dashboard query as Prometheus would receive it: Grafana's variables replaced.
fn substituted(expr: &str) -> String {
    expr.replace("$__rate_interval", "5m")
        .replace("$__interval", "1m")
        .replace("$__range", "1h")
        .replace("$job", ".*")
        .replace("$instance", ".*")
        .replace("$backend", ".*")
}

/// The metric names a PromQL expression selects: identifiers outside strings, label
/// matchers, ranges and label lists, that are not functions, keywords or numbers.
fn metric_names(expr: &str) -> BTreeSet<String> {
    const KEYWORDS: &[&str] = &[
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "bool",
        "and",
        "or",
        "unless",
        "offset",
        "inf",
        "nan",
    ];
    // Aggregations may put `by (...)` between their name and their parenthesis.
    const AGGREGATIONS: &[&str] = &[
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
        "limitk",
        "limit_ratio",
    ];
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    let mut skip_list = false;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' | '\'' | '`' => {
                i += 1;
                while i < chars.len() && chars[i] != c {
                    i += if chars[i] == '\\' { 2 } else { 1 };
                }
                i += 1;
            }
            '{' | '[' => {
                let close = if c == '{' { '}' } else { ']' };
                while i < chars.len() && chars[i] != close {
                    i += 1;
                }
                i += 1;
            }
            '(' if skip_list => {
                while i < chars.len() && chars[i] != ')' {
                    i += 1;
                }
                i += 1;
                skip_list = false;
            }
            // Numbers and durations (`0.5`, `1e3`, `5m`, `1h30m`).
            c if c.is_ascii_digit() || c == '.' => {
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                    i += 1;
                }
                skip_list = false;
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || "_:".contains(chars[i]))
                {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let mut j = i;
                while j < chars.len() && chars[j].is_whitespace() {
                    j += 1;
                }
                let lower = word.to_ascii_lowercase();
                if KEYWORDS.contains(&lower.as_str()) {
                    skip_list = matches!(
                        lower.as_str(),
                        "by" | "without" | "on" | "ignoring" | "group_left" | "group_right"
                    );
                } else if chars.get(j) != Some(&'(') && !AGGREGATIONS.contains(&lower.as_str()) {
                    names.insert(word);
                }
            }
            _ => {
                if !c.is_whitespace() {
                    skip_list = false;
                }
                i += 1;
            }
        }
    }
    names
}

/// The metric families apilb exports, with whether each is a histogram: every name
/// `src/metrics.rs` registers (the VIP's included, which need a `vip` section to appear)
/// and every family a running `apilb serve` shows on `/metrics` (the process collector's).
async fn exported_families() -> BTreeMap<String, bool> {
    let mut families = BTreeMap::new();
    let source = std::fs::read_to_string(repo_path("src/metrics.rs")).expect("read metrics.rs");
    for (at, _) in source.match_indices("\"apilb_") {
        let rest = &source[at + 1..];
        let name = &rest[..rest.find('"').expect("closing quote")];
        let before = source[..at].trim_end();
        let histogram = before.ends_with("HistogramOpts::new(") || before.ends_with("histogram(");
        families.insert(name.to_owned(), histogram);
    }
    let backend = EchoBackend::start("b1").await;
    let listen = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let metrics = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let lb = LbProcess::spawn(&lb_yaml(
        &[listen],
        &[("b1", backend.addr)],
        &format!("metrics:\n  listen: \"{metrics}\"\n"),
    ));
    wait_listening(metrics).await;
    let (status, body) = http_get(metrics, "/metrics").await;
    assert_eq!(status, 200, "{body}");
    for line in body.lines() {
        if let Some(decl) = line.strip_prefix("# TYPE ") {
            let mut parts = decl.split_whitespace();
            let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
                panic!("bad TYPE line: {line}");
            };
            families.insert(name.to_owned(), kind == "histogram");
        }
    }
    drop(lb);
    assert!(
        families.contains_key("process_resident_memory_bytes")
            && families.get("apilb_vip_takeover_duration_seconds") == Some(&true)
            && families.get("apilb_connections_accepted_total") == Some(&false),
        "family list incomplete: {families:?}"
    );
    families
}

/// Names in `names` that are not series of an exported family (`_bucket`, `_sum` and
/// `_count` only of histograms).
fn unknown(names: &BTreeSet<String>, families: &BTreeMap<String, bool>) -> Vec<String> {
    names
        .iter()
        .filter(|n| {
            if families.contains_key(n.as_str()) {
                return false;
            }
            !["_bucket", "_sum", "_count"].iter().any(|suffix| {
                n.strip_suffix(suffix)
                    .is_some_and(|base| families.get(base) == Some(&true))
            })
        })
        .cloned()
        .collect()
}

#[test]
fn metric_names_are_read_from_promql() {
    let got = metric_names(
        "sum by (job, le) (rate(apilb_x_bucket{a=\"b\",c=~\"$d\"}[5m])) \
         and on (job) (max without (instance) (process_y) > bool 0) / time() - foo:bar offset 5m",
    );
    let want: BTreeSet<String> = ["apilb_x_bucket", "process_y", "foo:bar"]
        .into_iter()
        .map(String::from)
        .collect();
    assert_eq!(got, want);
}

#[test]
fn every_alert_has_a_runbook_and_fires_and_silences_in_the_unit_tests() {
    let alerts = alerts();
    let names: BTreeSet<&str> = alerts.iter().map(|(n, _)| n.as_str()).collect();
    for want in [
        "ApilbNoHealthyBackend",
        "ApilbBackendDown",
        "ApilbVipFlapping",
        "ApilbVipNoMaster",
        "ApilbConnectionsRejected",
        "ApilbCertificateExpiringSoon",
        "ApilbChecksFailingUnderLoad",
    ] {
        assert!(names.contains(want), "{RULES}: no alert {want}");
    }
    for (name, rule) in &alerts {
        let annotations = &rule["annotations"];
        for key in ["summary", "description", "runbook"] {
            assert!(
                str_of(annotations, key).is_some_and(|t| t.trim().len() > 20),
                "{name}: annotation {key} missing or too short"
            );
        }
        assert!(
            matches!(
                str_of(&rule["labels"], "severity"),
                Some("warning" | "critical")
            ),
            "{name}: severity label must be warning or critical"
        );
    }
    // Each alert: some evaluation expects it firing, and some expects it silent.
    let tests = yaml(RULE_TESTS);
    let mut fires = BTreeSet::new();
    let mut silent = BTreeSet::new();
    for t in tests["tests"].as_sequence().expect("tests") {
        for e in t["alert_rule_test"].as_sequence().expect("alert_rule_test") {
            let name = str_of(e, "alertname").expect("alertname").to_owned();
            let expected = e["exp_alerts"].as_sequence().map_or(0, Vec::len);
            if expected > 0 {
                fires.insert(name);
            } else {
                silent.insert(name);
            }
        }
    }
    for name in &names {
        assert!(
            fires.contains(*name),
            "{RULE_TESTS}: {name} is never expected to fire"
        );
        assert!(
            silent.contains(*name),
            "{RULE_TESTS}: {name} is never expected to be silent"
        );
    }
}

#[test]
fn rules_pass_promtool_check_and_their_unit_tests() {
    if !have_tool("promtool", "prometheus") {
        return;
    }
    let dir = repo_path("deploy/prometheus");
    let (ok, report) = promtool(&dir, &["check", "rules", "apilb.rules.yaml"]);
    assert!(ok, "promtool check rules:\n{report}");
    assert!(report.contains("SUCCESS"), "{report}");
    let (ok, report) = promtool(&dir, &["test", "rules", "apilb.rules.test.yaml"]);
    assert!(ok, "promtool test rules:\n{report}");
    assert!(report.contains("SUCCESS"), "{report}");
}

#[test]
fn dashboard_has_a_prometheus_datasource_variable_and_covers_the_topics() {
    let d = dashboard();
    let vars = d["templating"]["list"].as_array().expect("templating.list");
    assert!(
        vars.iter().any(|v| v["name"] == "datasource"
            && v["type"] == "datasource"
            && v["query"] == "prometheus"),
        "no Prometheus datasource variable"
    );
    // Every panel and query uses that variable, so the dashboard imports into any Grafana.
    fn check_ds(panels: &[Json]) {
        for p in panels {
            let title = p["title"].as_str().unwrap_or("?");
            if p["type"] != "row" {
                assert_eq!(p["datasource"]["uid"], "${datasource}", "panel {title}");
            }
            for t in p["targets"].as_array().into_iter().flatten() {
                assert_eq!(t["datasource"]["uid"], "${datasource}", "panel {title}");
            }
            if let Some(nested) = p["panels"].as_array() {
                check_ds(nested);
            }
        }
    }
    check_ds(d["panels"].as_array().expect("panels"));
    let used: BTreeSet<String> = panel_queries(&d)
        .iter()
        .flat_map(|(_, e)| metric_names(&substituted(e)))
        .collect();
    for topic in [
        "apilb_connections_active",
        "apilb_connections_accepted_total",
        "apilb_bytes_total",
        "apilb_backend_state",
        "apilb_health_check_duration_seconds_bucket",
        "apilb_vip_state",
        "apilb_certificate_expiry_timestamp_seconds",
    ] {
        assert!(used.contains(topic), "no panel shows {topic}");
    }
}

#[test]
fn dashboard_queries_pass_promtool_as_rules() {
    if !have_tool("promtool", "prometheus") {
        return;
    }
    let d = dashboard();
    let queries = panel_queries(&d);
    assert!(queries.len() >= 20, "only {} queries", queries.len());
    let rules: Vec<Json> = queries
        .iter()
        .enumerate()
        .map(|(i, (_, expr))| {
            let record = format!("apilb:panel_{i}");
            serde_json::json!({"record": record, "expr": substituted(expr)})
        })
        .collect();
    let file = serde_json::json!({"groups": [{"name": "dashboard", "rules": rules}]});
    let dir = tempfile::tempdir().expect("tempdir");
    // JSON is YAML: promtool reads it as a rules file.
    std::fs::write(dir.path().join("panels.rules.yaml"), file.to_string()).expect("write rules");
    let (ok, report) = promtool(dir.path(), &["check", "rules", "panels.rules.yaml"]);
    assert!(
        ok,
        "promtool check rules on the dashboard's queries:\n{report}"
    );
    assert!(
        report.contains(&format!("SUCCESS: {} rules found", queries.len())),
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_and_dashboard_name_only_metrics_apilb_exports() {
    let families = exported_families().await;
    let mut problems = Vec::new();
    for (name, rule) in alerts() {
        let names = metric_names(str_of(&rule, "expr").expect("expr"));
        for bad in unknown(&names, &families) {
            problems.push(format!("{RULES}: alert {name} uses {bad}"));
        }
    }
    let d = dashboard();
    let mut exprs = panel_queries(&d);
    for v in d["templating"]["list"].as_array().expect("templating.list") {
        if let Some(q) = v["query"]["query"].as_str() {
            // label_values(SELECTOR, label): the selector is PromQL.
            let selector = q
                .strip_prefix("label_values(")
                .and_then(|r| r.rsplit_once(','))
                .map_or(q, |(s, _)| s);
            exprs.push((format!("variable {}", v["name"]), selector.to_owned()));
        }
    }
    for (title, expr) in &exprs {
        let names = metric_names(&substituted(expr));
        assert!(!names.is_empty(), "{title}: no metric in {expr}");
        for bad in unknown(&names, &families) {
            problems.push(format!("{DASHBOARD}: {title} uses {bad}"));
        }
    }
    assert!(
        problems.is_empty(),
        "metrics apilb does not export:\n{}",
        problems.join("\n")
    );
}
