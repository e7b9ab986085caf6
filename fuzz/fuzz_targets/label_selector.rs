//! Label selectors as the agent reads them from a workload and uses them: the API's selector converted
//! by `kube::objects::selector`, matched by `rollout::selector_matches`, and sent back to the API as a
//! `labelSelector` query by `kube::objects::selector_query`. No panic; and for every selector the API
//! server would accept (valid keys and values, `In`/`NotIn` with values, `Exists`/`DoesNotExist`
//! without), the query, parsed as the API server parses it (the fake API's parser), selects a pod
//! exactly when the agent's matcher does, so the pods the agent restarts are the ones it listed.
#![no_main]

use std::collections::BTreeMap;

use arbitrary::Arbitrary;
use dc_agent::cluster::LabelOperator;
use dc_agent::kube::objects::{selector, selector_query};
use dc_agent::rollout::selector_matches;
use dc_test_support::kube_api::selector::parse_labels;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector as KubeSelector, LabelSelectorRequirement,
};
use libfuzzer_sys::fuzz_target;

/// Names drawn mostly from a small set, so that selectors and labels meet; the rest arbitrary.
#[derive(Debug, Arbitrary)]
enum Name {
    Known(u8),
    Any(String),
}

const KNOWN: [&str; 12] = [
    "app",
    "tier",
    "a",
    "web",
    "db",
    "",
    "example.com/role",
    "k8s-app",
    "v1.2_x",
    "-bad",
    "a b",
    "in",
];

impl Name {
    fn get(&self) -> String {
        match self {
            Name::Known(i) => KNOWN[usize::from(*i) % KNOWN.len()].to_owned(),
            Name::Any(s) => s.clone(),
        }
    }
}

#[derive(Debug, Arbitrary)]
enum Operator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
    Other(String),
}

#[derive(Debug, Arbitrary)]
struct Input {
    match_labels: Option<Vec<(Name, Name)>>,
    expressions: Option<Vec<(Name, Operator, Option<Vec<Name>>)>>,
    /// The label sets of pods to match.
    pods: Vec<Vec<(Name, Name)>>,
}

/// What the API server's validation requires of a label key (`[prefix/]name`).
fn valid_key(key: &str) -> bool {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    prefix.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= 253
            && p.split('.').all(|part| {
                !part.is_empty()
                    && part
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                    && !part.starts_with('-')
                    && !part.ends_with('-')
            })
    }) && !name.is_empty()
        && valid_value(name)
}

/// What it requires of a label value: at most 63 alphanumerics, `-`, `_`, `.`, alphanumeric at both ends.
fn valid_value(v: &str) -> bool {
    v.len() <= 63
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && v.chars().next().is_none_or(|c| c.is_ascii_alphanumeric())
        && v.chars().last().is_none_or(|c| c.is_ascii_alphanumeric())
}

fuzz_target!(|input: Input| {
    let api = KubeSelector {
        match_labels: input.match_labels.map(|pairs| {
            pairs
                .iter()
                .map(|(k, v)| (k.get(), v.get()))
                .collect::<BTreeMap<_, _>>()
        }),
        match_expressions: input.expressions.map(|exprs| {
            exprs
                .iter()
                .map(|(key, op, values)| LabelSelectorRequirement {
                    key: key.get(),
                    operator: match op {
                        Operator::In => "In".into(),
                        Operator::NotIn => "NotIn".into(),
                        Operator::Exists => "Exists".into(),
                        Operator::DoesNotExist => "DoesNotExist".into(),
                        Operator::Other(s) => s.clone(),
                    },
                    values: values.as_ref().map(|v| v.iter().map(Name::get).collect()),
                })
                .collect()
        }),
    };
    let Ok(ours) = selector(&api) else {
        return;
    };
    let query = selector_query(&ours);
    let pods: Vec<BTreeMap<String, String>> = input
        .pods
        .iter()
        .map(|labels| labels.iter().map(|(k, v)| (k.get(), v.get())).collect())
        .collect();
    let picked: Vec<bool> = pods.iter().map(|l| selector_matches(&ours, l)).collect();

    let accepted_by_api = ours
        .match_labels
        .iter()
        .all(|(k, v)| valid_key(k) && valid_value(v))
        && ours.match_expressions.iter().all(|e| {
            valid_key(&e.key)
                && e.values.iter().all(|v| valid_value(v))
                && match e.operator {
                    LabelOperator::In | LabelOperator::NotIn => !e.values.is_empty(),
                    LabelOperator::Exists | LabelOperator::DoesNotExist => e.values.is_empty(),
                }
        });
    if !accepted_by_api {
        return;
    }
    let served = parse_labels(&query)
        .unwrap_or_else(|e| panic!("the API refuses the agent's query {query:?}: {e}"));
    for (labels, picked) in pods.iter().zip(picked) {
        assert_eq!(
            selector_matches(&served, labels),
            picked,
            "query {query:?} and the agent disagree on pod labels {labels:?}"
        );
    }
});
