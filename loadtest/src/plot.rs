//! `weir-loadtest plot`: SVG charts of `weir-loadtest run --json` results.
//!
//! Files that share a label are rounds of one target; each percentile and the
//! achieved rate is the median across them, so one noisy round does not move
//! the chart. Two files come out: `NAME-latency.svg` (percentile curves, log
//! scale) and `NAME-throughput.svg` (achieved requests/s per label).

use std::{error::Error, fs, path::PathBuf};

use clap::{Args, ValueEnum};
use plotters::{
    coord::{combinators::WithKeyPoints, types::RangedCoordi32},
    prelude::*,
    style::text_anchor::{HPos, Pos, VPos},
};
use serde::Deserialize;

/// The x categories of the latency chart, in the order of `Sample::latency`.
const PCTS: [&str; 5] = ["p50", "p90", "p99", "p99.9", "max"];
const SIZE: (u32, u32) = (960, 600);
const FONT: &str = "sans-serif";
/// The x axes are categories; category i is centred on x = CAT * i. Integer
/// positions because plotters formats tick labels of integer ranges with
/// custom key points, but not of f64 ones.
const CAT: i32 = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Metric {
    Request,
    Ttft,
    Itl,
    Tpot,
}

impl Metric {
    fn name(self) -> &'static str {
        match self {
            Metric::Request => "request",
            Metric::Ttft => "ttft",
            Metric::Itl => "itl",
            Metric::Tpot => "tpot",
        }
    }
}

#[derive(Args, Debug, Clone)]
pub struct PlotArgs {
    /// Directory for NAME-latency.svg and NAME-throughput.svg (created if
    /// missing).
    #[arg(long)]
    pub out: PathBuf,
    /// File name prefix of the charts.
    #[arg(long)]
    pub name: String,
    /// Chart title (default: NAME).
    #[arg(long)]
    pub title: Option<String>,
    /// Latency drawn in the latency chart (ttft, itl, tpot: streaming runs).
    #[arg(long, value_enum, default_value_t = Metric::Request)]
    pub metric: Metric,
    /// A `run --json` result file under a label; files sharing a label are
    /// rounds, merged by median. Labels are drawn in order of first appearance.
    #[arg(required = true, value_name = "LABEL=FILE", value_parser = parse_input)]
    pub inputs: Vec<(String, PathBuf)>,
}

fn parse_input(s: &str) -> Result<(String, PathBuf), String> {
    match s.split_once('=') {
        Some((label, file)) if !label.is_empty() && !file.is_empty() => {
            Ok((label.to_string(), PathBuf::from(file)))
        }
        _ => Err(format!("expected LABEL=FILE, got {s:?}")),
    }
}

/// The fields of a result file that the charts use.
#[derive(Deserialize)]
struct RunResult {
    latency_ms: Latencies,
    rps: Rps,
}

#[derive(Deserialize)]
struct Latencies {
    request: Option<Pcts>,
    ttft: Option<Pcts>,
    itl: Option<Pcts>,
    tpot: Option<Pcts>,
}

#[derive(Deserialize, Clone, Copy)]
struct Pcts {
    p50: f64,
    p90: f64,
    p99: f64,
    p99_9: f64,
    max: f64,
}

#[derive(Deserialize)]
struct Rps {
    // null when the run had no duration (serde_json writes NaN as null).
    achieved: Option<f64>,
}

/// One file, reduced to the chosen metric.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    latency: Option<[f64; 5]>,
    rps: Option<f64>,
}

/// One label, its rounds merged.
#[derive(Debug, Clone, PartialEq)]
struct Series {
    label: String,
    latency: Option<[f64; 5]>,
    rps: Option<f64>,
}

fn parse_result(text: &str, metric: Metric) -> Result<Sample, String> {
    let r: RunResult = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let l = r.latency_ms;
    let p = match metric {
        Metric::Request => l.request,
        Metric::Ttft => l.ttft,
        Metric::Itl => l.itl,
        Metric::Tpot => l.tpot,
    };
    Ok(Sample {
        latency: p.map(|p| [p.p50, p.p90, p.p99, p.p99_9, p.max]),
        rps: r.rps.achieved,
    })
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

/// Groups samples by label (first appearance first) and takes medians; a
/// round without the metric is left out of its label's median.
fn merge(samples: Vec<(String, Sample)>) -> Vec<Series> {
    let mut groups: Vec<(String, Vec<Sample>)> = Vec::new();
    for (label, s) in samples {
        match groups.iter_mut().find(|(l, _)| *l == label) {
            Some((_, g)) => g.push(s),
            None => groups.push((label, vec![s])),
        }
    }
    groups
        .into_iter()
        .map(|(label, g)| {
            let lats: Vec<[f64; 5]> = g.iter().filter_map(|s| s.latency).collect();
            let latency = (!lats.is_empty()).then(|| {
                std::array::from_fn(|i| {
                    median(lats.iter().map(|l| l[i]).collect()).unwrap_or(f64::NAN)
                })
            });
            let rps = median(g.iter().filter_map(|s| s.rps).collect());
            Series {
                label,
                latency,
                rps,
            }
        })
        .collect()
}

pub fn run(args: PlotArgs) -> Result<(), String> {
    let mut samples = Vec::with_capacity(args.inputs.len());
    for (label, file) in &args.inputs {
        let text =
            fs::read_to_string(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
        let sample = parse_result(&text, args.metric).map_err(|e| {
            format!(
                "{}: not a weir-loadtest run --json result: {e}",
                file.display()
            )
        })?;
        samples.push((label.clone(), sample));
    }
    let series = merge(samples);
    let metric = args.metric.name();
    for s in &series {
        if s.latency.is_none() {
            eprintln!(
                "weir-loadtest plot: {}: no {metric} latency in its files, left out of the latency chart",
                s.label
            );
        }
        if s.rps.is_none() {
            eprintln!(
                "weir-loadtest plot: {}: no achieved rps in its files, left out of the throughput chart",
                s.label
            );
        }
    }
    if series.iter().all(|s| s.latency.is_none()) {
        return Err(format!("no usable data: no file has latency_ms.{metric}"));
    }
    if series.iter().all(|s| s.rps.is_none()) {
        return Err("no usable data: no file has rps.achieved".into());
    }

    let title = args.title.as_deref().unwrap_or(&args.name);
    fs::create_dir_all(&args.out)
        .map_err(|e| format!("cannot create {}: {e}", args.out.display()))?;
    let charts = [
        ("latency", latency_svg(title, args.metric, &series)),
        ("throughput", throughput_svg(title, &series)),
    ];
    for (kind, svg) in charts {
        let path = args.out.join(format!("{}-{kind}.svg", args.name));
        let svg = svg.map_err(|e| format!("drawing {}: {e}", path.display()))?;
        fs::write(&path, svg).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

/// A number with about three significant digits and no trailing zeros:
/// axis ticks (0.1, 1, 10) and bar values (1007) alike.
fn num(v: f64) -> String {
    let decimals = match v.abs() {
        a if a >= 100.0 => 0,
        a if a >= 10.0 => 1,
        a if a >= 1.0 => 2,
        _ => 3,
    };
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// An x axis of `n` categories with a tick (and label) on each.
fn categories(n: usize) -> WithKeyPoints<RangedCoordi32> {
    let n = n as i32;
    (-CAT / 2..n * CAT - CAT / 2).with_key_points((0..n).map(|i| i * CAT).collect())
}

/// The item whose category tick is at `x`.
fn category<T>(items: &[T], x: i32) -> Option<&T> {
    if x % CAT != 0 {
        return None;
    }
    usize::try_from(x / CAT).ok().and_then(|i| items.get(i))
}

fn color(i: usize) -> RGBColor {
    // Tableau 10: distinct hues that survive greyscale printing reasonably.
    const C: [(u8, u8, u8); 10] = [
        (31, 119, 180),
        (255, 127, 14),
        (44, 160, 44),
        (214, 39, 40),
        (148, 103, 189),
        (140, 86, 75),
        (227, 119, 194),
        (127, 127, 127),
        (188, 189, 34),
        (23, 190, 207),
    ];
    let (r, g, b) = C[i % C.len()];
    RGBColor(r, g, b)
}

fn latency_svg(title: &str, metric: Metric, series: &[Series]) -> Result<String, Box<dyn Error>> {
    let drawn: Vec<(usize, &str, [f64; 5])> = series
        .iter()
        .enumerate()
        .filter_map(|(i, s)| s.latency.map(|l| (i, s.label.as_str(), l)))
        .collect();
    // Whole decades, so the log axis always has labelled ticks; zero (an
    // empty bucket) cannot sit on a log scale and is clamped to 1 µs.
    let values = drawn.iter().flat_map(|(_, _, l)| l.iter().copied());
    let (min, max) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, 0.0f64), |(lo, hi), v| {
            (lo.min(v.max(1e-3)), hi.max(v))
        });
    if !min.is_finite() {
        return Err("no finite latency values".into());
    }
    let lo = 10f64.powf(min.log10().floor());
    let hi = 10f64.powf(max.log10().ceil()).max(lo * 10.0);
    // A hair wider, or rounding can drop the tick at either end.
    let (lo, hi) = (lo * 0.999, hi * 1.001);

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(format!("{title}: {} latency", metric.name()), (FONT, 24))
            .margin(20)
            .x_label_area_size(50)
            .y_label_area_size(70)
            .build_cartesian_2d(categories(PCTS.len()), (lo..hi).log_scale())?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_desc("percentile")
            .y_desc("milliseconds (log scale)")
            .x_label_formatter(&|x| category(&PCTS, *x).map_or(String::new(), |s| s.to_string()))
            .y_label_formatter(&|y| num(*y))
            .label_style((FONT, 15))
            .axis_desc_style((FONT, 16))
            .draw()?;
        for (i, label, l) in drawn {
            let c = color(i);
            let points = l
                .iter()
                .enumerate()
                .map(|(x, &y)| (x as i32 * CAT, y.max(1e-3)));
            chart
                .draw_series(LineSeries::new(points, c.stroke_width(2)).point_size(4))?
                .label(label)
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], c.stroke_width(2)));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .label_font((FONT, 15))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
    }
    Ok(svg)
}

fn throughput_svg(title: &str, series: &[Series]) -> Result<String, Box<dyn Error>> {
    let bars: Vec<(usize, &str, f64)> = series
        .iter()
        .enumerate()
        .filter_map(|(i, s)| s.rps.map(|r| (i, s.label.as_str(), r)))
        .collect();
    let top = bars.iter().fold(0.0f64, |m, b| m.max(b.2));
    // Headroom for the value printed above the tallest bar.
    let top = if top > 0.0 { top * 1.15 } else { 1.0 };

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(format!("{title}: achieved throughput"), (FONT, 24))
            .margin(20)
            .x_label_area_size(50)
            .y_label_area_size(80)
            .build_cartesian_2d(categories(bars.len()), 0.0..top)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .y_desc("requests/s (median of rounds)")
            .y_max_light_lines(1)
            .x_label_formatter(&|x| category(&bars, *x).map_or(String::new(), |b| b.1.to_string()))
            .y_label_formatter(&|y| num(*y))
            .label_style((FONT, 15))
            .axis_desc_style((FONT, 16))
            .draw()?;
        chart.draw_series(bars.iter().enumerate().map(|(x, &(i, _, r))| {
            let x = x as i32 * CAT;
            Rectangle::new([(x - CAT / 3, 0.0), (x + CAT / 3, r)], color(i).filled())
        }))?;
        let above =
            TextStyle::from((FONT, 15).into_font()).pos(Pos::new(HPos::Center, VPos::Bottom));
        chart.draw_series(
            bars.iter()
                .enumerate()
                .map(|(x, &(_, _, r))| Text::new(num(r), (x as i32 * CAT, r), above.clone())),
        )?;
        root.present()?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn result_json(base: f64, rps: f64, streams: bool) -> String {
        let p = |k: f64| {
            serde_json::json!({
                "count": 100, "mean": base * k, "p50": base * k, "p90": 2.0 * base * k,
                "p99": 4.0 * base * k, "p99_9": 8.0 * base * k, "max": 16.0 * base * k,
            })
        };
        let s = |k| {
            if streams {
                p(k)
            } else {
                serde_json::Value::Null
            }
        };
        serde_json::json!({
            "tool": "weir-loadtest",
            "latency_ms": {"request": p(1.0), "ttft": s(0.5), "itl": s(0.1), "tpot": s(0.1)},
            "rps": {"achieved": rps, "offered": null, "sent": rps},
            "settings": {"mode": "closed"},
        })
        .to_string()
    }

    /// The contents of an SVG's <text> elements (plotters puts them on their
    /// own lines).
    fn texts(svg: &str) -> Vec<&str> {
        svg.split("<text")
            .skip(1)
            .filter_map(|t| t.split_once('>'))
            .filter_map(|(_, rest)| rest.split_once("</text>"))
            .map(|(text, _)| text.trim())
            .collect()
    }

    fn sample(base: f64, rps: f64) -> Sample {
        parse_result(&result_json(base, rps, false), Metric::Request).unwrap()
    }

    #[test]
    fn parses_inputs() {
        assert_eq!(
            parse_input("weir=a/b=c.json").unwrap(),
            ("weir".to_string(), PathBuf::from("a/b=c.json"))
        );
        for bad in ["weir", "=x.json", "weir=", ""] {
            assert!(parse_input(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn picks_the_metric_and_rejects_bad_json() {
        let text = result_json(1.0, 500.0, true);
        let s = parse_result(&text, Metric::Itl).unwrap();
        assert_eq!(s.latency, Some([0.1, 0.2, 0.4, 0.8, 1.6]));
        assert_eq!(s.rps, Some(500.0));
        let plain = parse_result(&result_json(1.0, 500.0, false), Metric::Ttft).unwrap();
        assert_eq!(plain.latency, None);
        for bad in [
            "",
            "{",
            "[]",
            r#"{"latency_ms": {}}"#,
            r#"{"rps": {"achieved": 1}}"#,
        ] {
            assert!(parse_result(bad, Metric::Request).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn merges_rounds_by_median_in_first_appearance_order() {
        let series = merge(vec![
            ("nginx".into(), sample(3.0, 900.0)),
            ("weir".into(), sample(1.0, 1000.0)),
            ("nginx".into(), sample(1.0, 1100.0)),
            ("weir".into(), sample(2.0, 1200.0)),
            ("nginx".into(), sample(2.0, 1000.0)),
        ]);
        let labels: Vec<&str> = series.iter().map(|s| s.label.as_str()).collect();
        assert_eq!(labels, ["nginx", "weir"]);
        // Odd count: the middle round; even: the mean of the two middle ones.
        assert_eq!(series[0].latency, Some([2.0, 4.0, 8.0, 16.0, 32.0]));
        assert_eq!(series[0].rps, Some(1000.0));
        assert_eq!(series[1].latency, Some([1.5, 3.0, 6.0, 12.0, 24.0]));
        assert_eq!(series[1].rps, Some(1100.0));
        // A round without the metric does not count.
        let partial = merge(vec![
            (
                "a".into(),
                Sample {
                    latency: None,
                    rps: None,
                },
            ),
            ("a".into(), sample(1.0, 10.0)),
        ]);
        assert_eq!(partial[0].latency, Some([1.0, 2.0, 4.0, 8.0, 16.0]));
        assert_eq!(partial[0].rps, Some(10.0));
    }

    #[test]
    fn formats_numbers() {
        assert_eq!(num(1006.83), "1007");
        assert_eq!(num(0.1), "0.1");
        assert_eq!(num(10.0), "10");
        assert_eq!(num(2.5), "2.5");
        assert_eq!(num(0.0314), "0.031");
    }

    #[test]
    fn renders_both_charts() {
        let dir = std::env::temp_dir().join(format!(
            "weir-plot-test-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        fs::create_dir_all(&dir).unwrap();
        let mut inputs = Vec::new();
        for (i, (label, base, rps)) in [("direct", 0.3, 1000.0), ("weir & co", 0.5, 987.0)]
            .into_iter()
            .enumerate()
        {
            let f = dir.join(format!("in-{i}.json"));
            fs::write(&f, result_json(base, rps, false)).unwrap();
            inputs.push((label.to_string(), f));
        }
        let out = dir.join("charts");
        run(PlotArgs {
            out: out.clone(),
            name: "t".into(),
            title: Some("test run".into()),
            metric: Metric::Request,
            inputs,
        })
        .unwrap();
        let lat = fs::read_to_string(out.join("t-latency.svg")).unwrap();
        let thr = fs::read_to_string(out.join("t-throughput.svg")).unwrap();
        for svg in [&lat, &thr] {
            assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(80)]);
            assert!(svg.trim_end().ends_with("</svg>"));
            let t = texts(svg);
            assert!(
                t.contains(&"direct") && t.contains(&"weir &amp; co"),
                "{t:?}"
            );
            assert!(t.iter().any(|t| t.starts_with("test run: ")), "{t:?}");
        }
        let t = texts(&lat);
        for tick in PCTS.into_iter().chain(["0.1", "1", "10"]) {
            assert!(t.contains(&tick), "{tick} not in {t:?}");
        }
        let t = texts(&thr);
        assert!(t.contains(&"1000") && t.contains(&"987"), "{t:?}");
        // Both series drawn: a polyline each, in the first two colours.
        assert!(lat.contains(r##"stroke="#1F77B4""##) && lat.contains(r##"stroke="#FF7F0E""##));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn refuses_missing_files_and_empty_metrics() {
        let dir = std::env::temp_dir().join(format!("weir-plot-err-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let args = |inputs| PlotArgs {
            out: dir.join("out"),
            name: "t".into(),
            title: None,
            metric: Metric::Ttft,
            inputs,
        };
        let missing = run(args(vec![("a".into(), dir.join("nope.json"))])).unwrap_err();
        assert!(missing.contains("nope.json"), "{missing}");
        let f = dir.join("plain.json");
        fs::write(&f, result_json(1.0, 10.0, false)).unwrap();
        let empty = run(args(vec![("a".into(), f.clone())])).unwrap_err();
        assert!(empty.contains("no usable data"), "{empty}");
        fs::write(&f, "not json").unwrap();
        let bad = run(args(vec![("a".into(), f)])).unwrap_err();
        assert!(bad.contains("plain.json"), "{bad}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
