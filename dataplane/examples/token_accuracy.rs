//! Accuracy of the byte-class token estimate against the real tokenizers, on the
//! committed corpus (dataplane/corpus/*.jsonl), and the fit of its weights.
//!
//!   cargo run --release -p weir-dataplane --example token_accuracy            # report
//!   cargo run --release -p weir-dataplane --example token_accuracy -- --fit   # refit
//!
//! The fit minimizes the squared *relative* error per sample (each category weighted
//! equally, a small ridge toward the current weights keeps rare features sane) on the
//! even-numbered samples of every category; the report gives the mean absolute
//! percentage error on the odd-numbered (held-out) samples as well as on all of them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::needless_range_loop)]

use std::time::Instant;
use weir::inspect::tokens::{Family, Features, FEATURES, FEATURE_NAMES};

struct Sample {
    features: [f64; FEATURES],
    bytes: usize,
    chars: usize,
    exact: [f64; 2],
}

const FAMILIES: [Family; 2] = [Family::O200k, Family::Cl100k];

fn main() {
    let fit = std::env::args().any(|a| a == "--fit");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let mut categories: Vec<(String, Vec<Sample>)> = Vec::new();
    let mut all_text = String::new();
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    names.sort();
    for path in names {
        let cat = path.file_stem().unwrap().to_string_lossy().to_string();
        let mut samples = Vec::new();
        for line in std::fs::read_to_string(&path).unwrap().lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let text = v["text"].as_str().unwrap();
            all_text.push_str(text);
            all_text.push('\u{0}');
            samples.push(Sample {
                features: Features::of(text.as_bytes()).as_array(),
                bytes: text.len(),
                chars: text.chars().count(),
                exact: FAMILIES.map(|f| f.exact(text) as f64),
            });
        }
        categories.push((cat, samples));
    }

    let mut weights = FAMILIES.map(|f| *f.weights());
    if fit {
        for (k, w) in weights.iter_mut().enumerate() {
            *w = fit_weights(&categories, k, w);
            println!("// {:?}", FAMILIES[k]);
            println!(
                "const {}: [f64; FEATURES] = [",
                format!("{:?}", FAMILIES[k]).to_uppercase()
            );
            for (name, x) in FEATURE_NAMES.iter().zip(w.iter()) {
                println!("    {x:.4}, // {name}");
            }
            println!("];");
        }
    }

    println!("\n| corpus | samples | bytes | o200k tokens | o200k MAPE (held-out) | o200k MAPE (all) | o200k bias | cl100k MAPE (held-out) | cl100k MAPE (all) | chars/4 vs o200k MAPE | chars/4 bias |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (cat, samples) in &categories {
        let bytes: usize = samples.iter().map(|s| s.bytes).sum();
        let toks: f64 = samples.iter().map(|s| s.exact[0]).sum();
        let mut cells = Vec::new();
        for (k, w) in weights.iter().enumerate() {
            let held = errors(
                samples.iter().skip(1).step_by(2),
                |s| dot(w, &s.features),
                k,
            );
            let all = errors(samples.iter(), |s| dot(w, &s.features), k);
            cells.push(format!("{:.1}%", held.0 * 100.0));
            cells.push(format!("{:.1}%", all.0 * 100.0));
            if k == 0 {
                cells.push(format!("{:+.1}%", all.1 * 100.0));
            }
        }
        let naive = errors(samples.iter(), |s| s.chars as f64 / 4.0, 0);
        println!(
            "| {cat} | {} | {bytes} | {toks} | {} | {:.1}% | {:+.1}% |",
            samples.len(),
            cells.join(" | "),
            naive.0 * 100.0,
            naive.1 * 100.0
        );
    }

    // Speed of both ways of counting, on the whole corpus.
    let texts: Vec<&str> = all_text.split('\u{0}').filter(|t| !t.is_empty()).collect();
    let t = Instant::now();
    let mut f = Features::default();
    let reps = 50;
    for _ in 0..reps {
        f = Features::default();
        for text in &texts {
            f.add(std::hint::black_box(text.as_bytes()));
        }
    }
    let est = t.elapsed().as_secs_f64() / reps as f64;
    for fam in FAMILIES {
        let t = Instant::now();
        let n = fam.exact(&all_text);
        let ex = t.elapsed().as_secs_f64();
        println!(
            "\n{fam:?}: exact {n} tokens in {:.1} ms ({:.1} MB/s); estimate {:.0} in {:.3} ms ({:.2} GB/s), sample by sample",
            ex * 1e3,
            all_text.len() as f64 / ex / 1e6,
            fam.estimate(&f),
            est * 1e3,
            all_text.len() as f64 / est / 1e9
        );
    }
}

fn dot(w: &[f64; FEATURES], x: &[f64; FEATURES]) -> f64 {
    w.iter().zip(x).map(|(a, b)| a * b).sum()
}

/// Mean absolute and mean signed relative error.
fn errors<'a>(
    samples: impl Iterator<Item = &'a Sample>,
    est: impl Fn(&Sample) -> f64,
    k: usize,
) -> (f64, f64) {
    let (mut abs, mut signed, mut n) = (0.0f64, 0.0f64, 0.0f64);
    for s in samples {
        if s.exact[k] > 0.0 {
            let r = (est(s) - s.exact[k]) / s.exact[k];
            abs += r.abs();
            signed += r;
            n += 1.0;
        }
    }
    (abs / n.max(1.0), signed / n.max(1.0))
}

/// Weighted ridge least squares on the even samples: rows x/y, target 1.
fn fit_weights(
    categories: &[(String, Vec<Sample>)],
    k: usize,
    prior: &[f64; FEATURES],
) -> [f64; FEATURES] {
    let mut a = [[0.0f64; FEATURES]; FEATURES];
    let mut b = [0.0f64; FEATURES];
    for (_, samples) in categories {
        let train: Vec<&Sample> = samples.iter().step_by(2).collect();
        let cw = 1.0 / train.len().max(1) as f64;
        for s in train {
            if s.exact[k] <= 0.0 {
                continue;
            }
            let x: Vec<f64> = s.features.iter().map(|v| v / s.exact[k]).collect();
            for i in 0..FEATURES {
                b[i] += cw * x[i];
                for j in 0..FEATURES {
                    a[i][j] += cw * x[i] * x[j];
                }
            }
        }
    }
    for i in 0..FEATURES {
        // The per-text intercept is pinned to 0: the corpus has no very short texts,
        // and a negative intercept fitted on long ones would undercount "Hi".
        let (lambda, target) = if FEATURE_NAMES[i] == "texts" {
            (1e3, 0.0)
        } else {
            (1e-4, prior[i])
        };
        a[i][i] += lambda;
        b[i] += lambda * target;
    }
    solve(a, b)
}

/// Gaussian elimination with partial pivoting.
fn solve(mut a: [[f64; FEATURES]; FEATURES], mut b: [f64; FEATURES]) -> [f64; FEATURES] {
    for c in 0..FEATURES {
        let p = (c..FEATURES)
            .max_by(|&i, &j| a[i][c].abs().total_cmp(&a[j][c].abs()))
            .unwrap();
        a.swap(c, p);
        b.swap(c, p);
        for r in c + 1..FEATURES {
            let f = a[r][c] / a[c][c];
            for j in c..FEATURES {
                a[r][j] -= f * a[c][j];
            }
            b[r] -= f * b[c];
        }
    }
    let mut x = [0.0; FEATURES];
    for c in (0..FEATURES).rev() {
        let s: f64 = (c + 1..FEATURES).map(|j| a[c][j] * x[j]).sum();
        x[c] = (b[c] - s) / a[c][c];
    }
    x
}
