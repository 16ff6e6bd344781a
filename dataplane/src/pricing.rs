//! The price table: what a request costs, from its token counts and the model's
//! prices (USD per million tokens, as providers publish them). Costs are counted in
//! micro-dollars: a price of `p` USD per million tokens is `p` micro-dollars per token.

use crate::config::ModelPattern;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PriceConfig {
    /// Model patterns (`name` or `prefix*`); the first matching entry wins.
    pub models: Vec<String>,
    /// USD per million prompt tokens.
    pub input: f64,
    /// USD per million completion tokens.
    pub output: f64,
    /// USD per million cached prompt tokens; default: `input`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_input: Option<f64>,
    /// USD per million reasoning tokens (part of the completion); default: `output`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<f64>,
}

/// Micro-dollars per token.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Price {
    pub input: f64,
    pub output: f64,
    pub cached_input: f64,
    pub reasoning: f64,
}

/// Token counts of one request, as far as they are known.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tokens {
    pub prompt: u64,
    /// Part of `prompt`.
    pub cached: u64,
    pub completion: u64,
    /// Part of `completion`.
    pub reasoning: u64,
}

impl Price {
    /// Cost in micro-dollars, rounded up.
    pub fn cost(&self, t: Tokens) -> u64 {
        let cached = t.cached.min(t.prompt);
        let reasoning = t.reasoning.min(t.completion);
        let c = (t.prompt - cached) as f64 * self.input
            + cached as f64 * self.cached_input
            + (t.completion - reasoning) as f64 * self.output
            + reasoning as f64 * self.reasoning;
        c.ceil() as u64
    }

    /// Cost of `n` more completion tokens (streams charged as they go).
    pub fn output_cost(&self, n: u64) -> u64 {
        (n as f64 * self.output).ceil() as u64
    }
}

#[derive(Debug, Clone, Default)]
pub struct Prices(Vec<(Vec<ModelPattern>, Price)>);

impl Prices {
    pub fn compile(cfg: &[PriceConfig]) -> Result<Prices, (String, String)> {
        let mut out = Vec::new();
        for (i, p) in cfg.iter().enumerate() {
            let path = format!("prices[{i}]");
            if p.models.is_empty() {
                return Err((
                    format!("{path}.models"),
                    "at least one model pattern".into(),
                ));
            }
            let pats = ModelPattern::parse_all(&p.models, &path)?;
            for (field, v) in [
                ("input", Some(p.input)),
                ("output", Some(p.output)),
                ("cached_input", p.cached_input),
                ("reasoning", p.reasoning),
            ] {
                if v.is_some_and(|v| !(v.is_finite() && (0.0..=1e6).contains(&v))) {
                    return Err((
                        format!("{path}.{field}"),
                        "a price is USD per million tokens, between 0 and 1000000".into(),
                    ));
                }
            }
            out.push((
                pats,
                Price {
                    input: p.input,
                    output: p.output,
                    cached_input: p.cached_input.unwrap_or(p.input),
                    reasoning: p.reasoning.unwrap_or(p.output),
                },
            ));
        }
        Ok(Prices(out))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn get(&self, model: &str) -> Option<&Price> {
        self.0
            .iter()
            .find(|(pats, _)| pats.iter().any(|p| p.matches(model)))
            .map(|(_, p)| p)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn costs_with_cached_and_reasoning_prices() {
        let cfg: Vec<PriceConfig> = serde_yaml::from_str(
            "[{models: ['gpt-4o*'], input: 2.5, cached_input: 1.25, output: 10}, {models: [o3], input: 2, output: 8, reasoning: 4}]",
        )
        .unwrap();
        let p = Prices::compile(&cfg).unwrap();
        let g = p.get("gpt-4o-mini").unwrap();
        // 1000 prompt of which 400 cached, 200 completion:
        // 600 × 2.5 + 400 × 1.25 + 200 × 10 = 1500 + 500 + 2000 µ$.
        let t = Tokens {
            prompt: 1000,
            cached: 400,
            completion: 200,
            reasoning: 0,
        };
        assert_eq!(g.cost(t), 4000);
        let o = p.get("o3").unwrap();
        let t = Tokens {
            prompt: 10,
            cached: 0,
            completion: 100,
            reasoning: 60,
        };
        assert_eq!(o.cost(t), 20 + 40 * 8 + 60 * 4);
        assert!(p.get("llama").is_none());
        assert_eq!(g.output_cost(3), 30);
    }

    #[test]
    fn rejects_bad_prices() {
        let cfg: Vec<PriceConfig> =
            serde_yaml::from_str("[{models: [a], input: -1, output: 1}]").unwrap();
        assert_eq!(Prices::compile(&cfg).unwrap_err().0, "prices[0].input");
    }
}
