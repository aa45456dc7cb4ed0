//! What a run records of each epoch.

/// One row of the history, as Keras reports an epoch.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EpochRecord {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Mean training loss over the epoch's batches (with dropout active).
    pub loss: f64,
    /// Training accuracy over the epoch's batches.
    pub accuracy: f64,
    /// Loss on the validation (test) set after the epoch.
    pub val_loss: f64,
    /// Accuracy on the validation (test) set after the epoch.
    pub val_accuracy: f64,
    /// Wall time of the epoch, including validation.
    pub seconds: f64,
}

impl EpochRecord {
    /// Whether this epoch did better on validation than `other`: higher accuracy, then lower
    /// loss.
    pub fn better_than(&self, other: &EpochRecord) -> bool {
        self.val_accuracy > other.val_accuracy
            || (self.val_accuracy == other.val_accuracy && self.val_loss < other.val_loss)
    }
}
