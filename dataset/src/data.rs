//! What a dataset holds: its splits of examples and the schema that describes them.

/// The examples of one split: their inputs and labels.
#[derive(Debug, Clone)]
pub struct Split {
    /// Bytes of each example, (len, width) row-major, for data of bytes (images' pixels,
    /// 0..=255); empty for real-valued data.
    pub pixels: Vec<u8>,
    /// What a network reads, (len, width) row-major: the bytes / 255 (as the study scales
    /// pixels), or the real values as the source holds them.
    pub values: Vec<f32>,
    /// Class of each example.
    pub labels: Vec<u8>,
    /// Inputs per example.
    pub width: usize,
}

impl Split {
    /// A split of bytes read as value / 255: `pixels` (len, `width`) and `labels`.
    pub fn bytes(pixels: Vec<u8>, labels: Vec<u8>, width: usize) -> Split {
        assert_eq!(pixels.len(), labels.len() * width, "pixels and labels disagree");
        let values = pixels.iter().map(|&p| f32::from(p) / 255.0).collect();
        Split { pixels, values, labels, width }
    }

    /// A split of real values: `values` (len, `width`) and `labels`.
    pub fn real(values: Vec<f32>, labels: Vec<u8>, width: usize) -> Split {
        assert_eq!(values.len(), labels.len() * width, "values and labels disagree");
        Split { pixels: Vec::new(), values, labels, width }
    }

    /// Number of examples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True for a split without examples.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Whether the examples are bytes ([`Split::pixels`] holds them).
    pub fn is_bytes(&self) -> bool {
        !self.pixels.is_empty() || (self.is_empty() && self.values.is_empty() && self.width == 0)
    }

    /// The first `n` examples (or all of them).
    pub fn head(&self, n: usize) -> Split {
        let n = n.min(self.len());
        let w = self.width;
        Split {
            pixels: self.pixels.get(..n * w).map_or_else(Vec::new, <[u8]>::to_vec),
            values: self.values[..n * w].to_vec(),
            labels: self.labels[..n].to_vec(),
            width: w,
        }
    }

    /// The examples at `indices`, in that order.
    pub fn select(&self, indices: &[u32]) -> Split {
        let w = self.width;
        let rows = |v: &[u8]| indices.iter().flat_map(|&i| v[i as usize * w..][..w].iter().copied()).collect();
        let pixels = if self.pixels.is_empty() { Vec::new() } else { rows(&self.pixels) };
        let values = indices.iter().flat_map(|&i| self.values[i as usize * w..][..w].iter().copied()).collect();
        let labels = indices.iter().map(|&i| self.labels[i as usize]).collect();
        Split { pixels, values, labels, width: w }
    }
}

/// What a dataset is: the shape of its examples and its classes. It travels from the
/// loader to the network, the recipe, quantization, the report and `firmware-sim`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Schema {
    /// What reports call it: `Fashion-MNIST`, `iris.csv`.
    pub name: String,
    /// Inputs per example.
    pub inputs: usize,
    /// Class names, in label order.
    pub class_names: Vec<String>,
    /// The images' (rows, columns) when the inputs are images' pixels, row-major.
    #[serde(default)]
    pub image: Option<[usize; 2]>,
    /// Whether the inputs are bytes read as value / 255 (pixels); otherwise real values,
    /// which the trainer standardizes.
    pub bytes: bool,
}

impl Schema {
    /// Number of classes.
    pub fn classes(&self) -> usize {
        self.class_names.len()
    }

    /// What reports call its examples: `images`, or `examples` (a table's rows).
    pub fn noun(&self) -> &'static str {
        if self.image.is_some() { "images" } else { "examples" }
    }
}

/// A dataset read: its training and test splits and what they are.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// The examples to train on.
    pub train: Split,
    /// The examples to test on.
    pub test: Split,
    /// Their shape and classes.
    pub schema: Schema,
    /// Where they were read from, for messages and the run's summary.
    pub origin: String,
}
