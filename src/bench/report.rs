//! The comparison over every model with a benchmark summary: a markdown
//! table and a hand-written SVG bar chart (pass@1 base and plus), for the
//! benchmarks README and the docs phase to embed.
//!
//! Both files are written atomically and only when their bytes change; they
//! hold no timestamps of their own, so rebuilding an unchanged report is a
//! no-op.

use super::score::{ResultsError, Summary};
use crate::atomic;
use crate::workspace::{models_conf, Workspace};
use std::path::{Path, PathBuf};

/// One row of the comparison.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Row {
    pub model: String,
    pub name: String,
    pub dataset: String,
    pub tasks: usize,
    pub complete: bool,
    pub pass_at_1_base: f64,
    pub pass_at_1_plus: Option<f64>,
    /// `SPEED=` of the model's profile in models.conf, as written there.
    pub speed: Option<String>,
    /// The manifest's `card.file_size_gb`, else its `size`.
    pub size: Option<String>,
    pub quant: Option<String>,
    pub engine: String,
    pub date: String,
}

/// Rows for every `<results_dir>/*.json` summary, best plus (then base) first.
pub fn rows(ws: &Workspace, results_dir: &Path) -> Result<Vec<Row>, ResultsError> {
    let mut files: Vec<PathBuf> = match std::fs::read_dir(results_dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json") && p.is_file())
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(source) => {
            return Err(ResultsError::Io {
                path: results_dir.to_path_buf(),
                source,
            })
        }
    };
    files.sort();
    let conf = models_conf::read(&ws.path(&ws.config.paths.models_conf)).ok();
    let mut rows = Vec::new();
    for file in files {
        let s = Summary::read(&file)?;
        let manifest = ws.load_manifest(&s.model).ok();
        let speed = manifest
            .as_ref()
            .and_then(|m| m.profile.clone())
            .and_then(|id| conf.as_ref().and_then(|c| c.profile(&id)))
            .and_then(|p| p.get("SPEED").map(str::to_string))
            .filter(|s| !s.is_empty());
        let size = manifest.as_ref().and_then(|m| {
            m.card
                .get("file_size_gb")
                .map(|v| format!("{} GB", v.to_string().trim_matches('"')))
                .or_else(|| Some(m.size.clone()))
        });
        rows.push(Row {
            name: manifest
                .as_ref()
                .map(|m| m.name.clone())
                .unwrap_or_else(|| s.model.clone()),
            quant: manifest.as_ref().and_then(|m| m.hub.quant.clone()),
            model: s.model,
            dataset: s.dataset,
            tasks: s.tasks,
            complete: s.complete,
            pass_at_1_base: s.pass_at_1_base,
            pass_at_1_plus: s.pass_at_1_plus,
            speed,
            size,
            engine: s.engine,
            date: s.date.get(..10).unwrap_or(&s.date).to_string(),
        });
    }
    rows.sort_by(|a, b| {
        let key = |r: &Row| (r.pass_at_1_plus.unwrap_or(-1.0), r.pass_at_1_base);
        key(b)
            .partial_cmp(&key(a))
            .unwrap_or(std::cmp::Ordering::Equal)
            .then_with(|| a.model.cmp(&b.model))
    });
    Ok(rows)
}

fn pct(v: f64) -> String {
    format!("{:.1}", v * 100.0)
}

fn md_cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// The markdown report (table plus the chart embedded).
pub fn markdown(rows: &[Row], svg_name: &str) -> String {
    let mut out = String::from(
        "# HumanEval+ comparison\n\n\
         Greedy pass@1 (EvalPlus prompting, code run in onboard's sandbox). \
         *plus* needs the base and the plus tests to pass. Rows scored on the \
         original problems only say \"HumanEval (base tests only)\" and have no \
         plus score. Written by `onboard report` and the workflow's `compare` step.\n\n",
    );
    if rows.is_empty() {
        out.push_str("No benchmark results yet: run the benchmark step of a model.\n");
        return out;
    }
    out.push_str(&format!("![HumanEval pass@1 per model]({svg_name})\n\n"));
    out.push_str("| Model | pass@1 base | pass@1 plus | Dataset | Tasks | Speed | Size | Quant | Engine | Date |\n");
    out.push_str("|---|---:|---:|---|---:|---|---|---|---|---|\n");
    for r in rows {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {}{} | {} | {} | {} | {} | {} |\n",
            md_cell(&r.name),
            pct(r.pass_at_1_base),
            r.pass_at_1_plus.map(pct).unwrap_or_else(|| "—".into()),
            md_cell(&r.dataset),
            r.tasks,
            if r.complete { "" } else { " (incomplete)" },
            md_cell(r.speed.as_deref().unwrap_or("—")),
            md_cell(r.size.as_deref().unwrap_or("—")),
            md_cell(r.quant.as_deref().unwrap_or("—")),
            md_cell(&r.engine),
            r.date
        ));
    }
    out
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A horizontal bar chart: per model a base bar and a plus bar, 0–100 %.
pub fn svg(rows: &[Row]) -> String {
    const LEFT: f64 = 230.0;
    const PLOT: f64 = 500.0;
    const BAR: f64 = 14.0;
    const GROUP: f64 = 2.0 * BAR + 14.0;
    const TOP: f64 = 50.0;
    let width = LEFT + PLOT + 70.0;
    let height = TOP + GROUP * rows.len().max(1) as f64 + 40.0;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"{height:.0}\" viewBox=\"0 0 {width:.0} {height:.0}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <title>HumanEval pass@1 per model</title>\n\
         <rect width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>\n\
         <text x=\"{LEFT}\" y=\"20\" font-size=\"14\" font-weight=\"bold\">HumanEval pass@1 (greedy)</text>\n\
         <rect x=\"{LEFT}\" y=\"28\" width=\"10\" height=\"10\" fill=\"#4e79a7\"/><text x=\"{:.0}\" y=\"37\">base</text>\n\
         <rect x=\"{:.0}\" y=\"28\" width=\"10\" height=\"10\" fill=\"#f28e2b\"/><text x=\"{:.0}\" y=\"37\">plus (base and plus tests)</text>\n",
        LEFT + 14.0,
        LEFT + 60.0,
        LEFT + 74.0
    );
    let bottom = TOP + GROUP * rows.len().max(1) as f64;
    for tick in 0..=5 {
        let x = LEFT + PLOT * tick as f64 / 5.0;
        s.push_str(&format!(
            "<line x1=\"{x:.1}\" y1=\"{TOP}\" x2=\"{x:.1}\" y2=\"{bottom:.1}\" stroke=\"#dddddd\"/>\n\
             <text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#555555\">{}%</text>\n",
            bottom + 16.0,
            tick * 20
        ));
    }
    for (i, r) in rows.iter().enumerate() {
        let y = TOP + GROUP * i as f64 + 4.0;
        let label = if r.pass_at_1_plus.is_none() {
            format!("{} (base tests only)", r.name)
        } else {
            r.name.clone()
        };
        s.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\n",
            LEFT - 8.0,
            y + BAR + 4.0,
            xml(&label)
        ));
        for (j, (value, color)) in [
            (Some(r.pass_at_1_base), "#4e79a7"),
            (r.pass_at_1_plus, "#f28e2b"),
        ]
        .into_iter()
        .enumerate()
        {
            let by = y + j as f64 * BAR;
            match value {
                Some(v) => {
                    let w = PLOT * v.clamp(0.0, 1.0);
                    s.push_str(&format!(
                        "<rect x=\"{LEFT}\" y=\"{by:.1}\" width=\"{w:.1}\" height=\"{:.1}\" fill=\"{color}\"/>\n\
                         <text x=\"{:.1}\" y=\"{:.1}\" fill=\"#333333\">{}%</text>\n",
                        BAR - 2.0,
                        LEFT + w + 4.0,
                        by + BAR - 4.0,
                        pct(v)
                    ));
                }
                None => s.push_str(&format!(
                    "<text x=\"{:.1}\" y=\"{:.1}\" fill=\"#999999\">no plus tests</text>\n",
                    LEFT + 4.0,
                    by + BAR - 4.0
                )),
            }
        }
    }
    s.push_str("</svg>\n");
    s
}

/// Writes `<out>/report.md` and `<out>/report.svg`; returns whether either
/// changed.
pub fn write(rows: &[Row], out_dir: &Path) -> Result<bool, ResultsError> {
    let md_path = out_dir.join("report.md");
    let svg_path = out_dir.join("report.svg");
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ResultsError::Io { path, source }
    };
    let a = atomic::write_if_changed(&svg_path, svg(rows).as_bytes()).map_err(io(&svg_path))?;
    let b = atomic::write_if_changed(&md_path, markdown(rows, "report.svg").as_bytes())
        .map_err(io(&md_path))?;
    Ok(a || b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(model: &str, base: f64, plus: Option<f64>) -> Row {
        Row {
            model: model.into(),
            name: format!("<{model}>"),
            dataset: if plus.is_some() {
                "HumanEval+".into()
            } else {
                "HumanEval (base tests only)".into()
            },
            tasks: 164,
            complete: true,
            pass_at_1_base: base,
            pass_at_1_plus: plus,
            speed: Some("112 t/s".into()),
            size: Some("30 GB".into()),
            quant: Some("Q8_0".into()),
            engine: "llama-server".into(),
            date: "2026-11-26".into(),
        }
    }

    #[test]
    fn table_and_chart_show_both_scores_and_label_base_only_rows() {
        let rows = vec![row("a", 0.9, Some(0.85)), row("b", 0.3, None)];
        let md = markdown(&rows, "report.svg");
        assert!(
            md.contains("| <a> | 90.0 | 85.0 | HumanEval+ | 164 | 112 t/s | 30 GB | Q8_0 |"),
            "{md}"
        );
        assert!(
            md.contains("| <b> | 30.0 | — | HumanEval (base tests only) |"),
            "{md}"
        );
        let chart = svg(&rows);
        assert!(chart.contains("&lt;a&gt;") && !chart.contains("<a>"));
        assert!(chart.contains("&lt;b&gt; (base tests only)"));
        assert!(chart.contains(">85.0%<") && chart.contains("no plus tests"));
        assert!(chart.starts_with("<svg") && chart.ends_with("</svg>\n"));
    }
}
