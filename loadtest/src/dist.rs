//! Distributions for the mock's timings and output lengths and the generator's request
//! shapes, and the per-shard random
//! source that samples them.
//!
//! Spec syntax (CLI): `50` (fixed), `uniform:20:80` (inclusive bounds), `normal:50:10`
//! (mean and standard deviation; samples below 0 are clamped to 0).

use std::cell::Cell;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Dist {
    Fixed(f64),
    Uniform(f64, f64),
    Normal { mean: f64, sd: f64 },
}

impl std::fmt::Display for Dist {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Dist::Fixed(v) => write!(f, "{v}"),
            Dist::Uniform(a, b) => write!(f, "uniform:{a}:{b}"),
            Dist::Normal { mean, sd } => write!(f, "normal:{mean}:{sd}"),
        }
    }
}

impl Dist {
    /// Parses a spec whose values must lie in `lo..=hi`.
    pub fn parse(s: &str, lo: f64, hi: f64) -> Result<Dist, String> {
        let num = |t: &str| -> Result<f64, String> {
            let v: f64 = t.trim().parse().map_err(|e| format!("`{t}`: {e}"))?;
            if v.is_finite() && (lo..=hi).contains(&v) {
                Ok(v)
            } else {
                Err(format!("`{t}` must be between {lo} and {hi}"))
            }
        };
        let parts: Vec<&str> = s.split(':').collect();
        match parts.as_slice() {
            [v] => Ok(Dist::Fixed(num(v)?)),
            ["uniform", a, b] => {
                let (a, b) = (num(a)?, num(b)?);
                if a > b {
                    return Err("uniform:MIN:MAX needs MIN <= MAX".into());
                }
                Ok(Dist::Uniform(a, b))
            }
            ["normal", m, sd] => Ok(Dist::Normal {
                mean: num(m)?,
                sd: num(sd)?,
            }),
            _ => Err(format!(
                "`{s}`: expected N, uniform:MIN:MAX or normal:MEAN:SD"
            )),
        }
    }

    pub fn is_zero(&self) -> bool {
        *self == Dist::Fixed(0.0)
    }

    pub fn sample(&self, rng: &Rng) -> f64 {
        match *self {
            Dist::Fixed(v) => v,
            Dist::Uniform(a, b) => a + (b - a) * rng.unit(),
            Dist::Normal { mean, sd } => {
                // Box–Muller; one of the pair is enough here.
                let u1 = rng.unit().max(f64::MIN_POSITIVE);
                let u2 = rng.unit();
                let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
                (mean + sd * z).max(0.0)
            }
        }
    }
}

/// A small per-shard PRNG (SplitMix64): the mock needs speed and spread, not
/// cryptographic quality.
#[derive(Debug)]
pub struct Rng(Cell<u64>);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(Cell::new(seed))
    }

    pub fn next_u64(&self) -> u64 {
        let s = self.0.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
        self.0.set(s);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p`.
    pub fn chance(&self, p: f64) -> bool {
        p > 0.0 && self.unit() < p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_specs_and_rejects_bad_ones() {
        assert_eq!(Dist::parse("50", 0.0, 1e6), Ok(Dist::Fixed(50.0)));
        assert_eq!(
            Dist::parse("uniform:20:80", 0.0, 1e6),
            Ok(Dist::Uniform(20.0, 80.0))
        );
        assert_eq!(
            Dist::parse("normal:50:10", 0.0, 1e6),
            Ok(Dist::Normal {
                mean: 50.0,
                sd: 10.0
            })
        );
        for bad in ["", "-1", "uniform:9:1", "normal:1", "poisson:3", "x", "nan"] {
            assert!(Dist::parse(bad, 0.0, 1e6).is_err(), "{bad}");
        }
    }

    #[test]
    fn samples_have_the_asked_shape() {
        let rng = Rng::new(7);
        let n = 20_000;
        let u: Vec<f64> = (0..n)
            .map(|_| Dist::Uniform(20.0, 80.0).sample(&rng))
            .collect();
        assert!(u.iter().all(|v| (20.0..=80.0).contains(v)));
        let mean = u.iter().sum::<f64>() / n as f64;
        assert!((mean - 50.0).abs() < 1.0, "{mean}");
        let g: Vec<f64> = (0..n)
            .map(|_| {
                Dist::Normal {
                    mean: 50.0,
                    sd: 10.0,
                }
                .sample(&rng)
            })
            .collect();
        let mean = g.iter().sum::<f64>() / n as f64;
        let var = g.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n as f64;
        assert!((mean - 50.0).abs() < 0.5, "{mean}");
        assert!((var.sqrt() - 10.0).abs() < 0.5, "{}", var.sqrt());
        // Clamped at zero.
        assert!((0..1000).all(|_| Dist::Normal { mean: 0.0, sd: 5.0 }.sample(&rng) >= 0.0));
        let hits = (0..n).filter(|_| rng.chance(0.25)).count();
        assert!((hits as f64 / n as f64 - 0.25).abs() < 0.02);
        assert!(!rng.chance(0.0));
    }
}
