//! ggml tensor types and `llama_ftype` file types.
//!
//! Both tables follow llama.cpp's `ggml.h` / `llama.h` (checked against the
//! block sizes that `libggml`'s `ggml_blck_size` / `ggml_type_size` report).
//! Unknown ids are kept as raw numbers: a new quantisation must never make a
//! file unreadable, it only makes that tensor's byte size unknown.

use serde::Serialize;

/// One row of the ggml type table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TypeInfo {
    /// ggml's numeric id, as stored in a GGUF tensor info.
    pub id: u32,
    /// ggml's name (`q4_K`, `bf16`, …), upper-cased the way llama.cpp logs it.
    pub name: &'static str,
    /// Elements per block.
    pub block_size: u64,
    /// Bytes per block.
    pub type_size: u64,
}

/// (id, name, elements per block, bytes per block).
const TABLE: &[(u32, &str, u64, u64)] = &[
    (0, "F32", 1, 4),
    (1, "F16", 1, 2),
    (2, "Q4_0", 32, 18),
    (3, "Q4_1", 32, 20),
    (6, "Q5_0", 32, 22),
    (7, "Q5_1", 32, 24),
    (8, "Q8_0", 32, 34),
    (9, "Q8_1", 32, 36),
    (10, "Q2_K", 256, 84),
    (11, "Q3_K", 256, 110),
    (12, "Q4_K", 256, 144),
    (13, "Q5_K", 256, 176),
    (14, "Q6_K", 256, 210),
    (15, "Q8_K", 256, 292),
    (16, "IQ2_XXS", 256, 66),
    (17, "IQ2_XS", 256, 74),
    (18, "IQ3_XXS", 256, 98),
    (19, "IQ1_S", 256, 50),
    (20, "IQ4_NL", 32, 18),
    (21, "IQ3_S", 256, 110),
    (22, "IQ2_S", 256, 82),
    (23, "IQ4_XS", 256, 136),
    (24, "I8", 1, 1),
    (25, "I16", 1, 2),
    (26, "I32", 1, 4),
    (27, "I64", 1, 8),
    (28, "F64", 1, 8),
    (29, "IQ1_M", 256, 56),
    (30, "BF16", 1, 2),
    // 31..=33 (Q4_0_4_4 …) and 36..=38 (IQ4_NL_4_4 …) were removed from GGUF
    // files; llama.cpp repacks at load time now.
    (34, "TQ1_0", 256, 54),
    (35, "TQ2_0", 256, 66),
    (39, "MXFP4", 32, 17),
    (40, "NVFP4", 64, 36),
    (41, "Q1_0", 128, 18),
    (42, "Q2_0", 64, 18),
];

/// A tensor's ggml type: known, or a raw id this build has no row for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct GgmlType(pub u32);

impl GgmlType {
    pub const F32: GgmlType = GgmlType(0);
    pub const F16: GgmlType = GgmlType(1);
    pub const Q4_0: GgmlType = GgmlType(2);
    pub const Q4_1: GgmlType = GgmlType(3);
    pub const Q8_0: GgmlType = GgmlType(8);
    pub const Q4_K: GgmlType = GgmlType(12);
    pub const Q5_K: GgmlType = GgmlType(13);
    pub const Q6_K: GgmlType = GgmlType(14);
    pub const IQ4_NL: GgmlType = GgmlType(20);
    pub const BF16: GgmlType = GgmlType(30);
    pub const MXFP4: GgmlType = GgmlType(39);

    /// The table row, or `None` for an id this build does not know.
    pub fn info(self) -> Option<TypeInfo> {
        TABLE
            .iter()
            .find(|row| row.0 == self.0)
            .map(|&(id, name, block_size, type_size)| TypeInfo {
                id,
                name,
                block_size,
                type_size,
            })
    }

    /// Looks a type up by name, case-insensitively (`q8_0`, `Q4_K`, `bf16`).
    pub fn from_name(name: &str) -> Option<GgmlType> {
        TABLE
            .iter()
            .find(|row| row.1.eq_ignore_ascii_case(name))
            .map(|row| GgmlType(row.0))
    }

    /// The name, or `type<id>` for an unknown id.
    pub fn name(self) -> String {
        match self.info() {
            Some(i) => i.name.to_string(),
            None => format!("type{}", self.0),
        }
    }

    /// Bytes a tensor of this type with `n_elements` elements occupies, or
    /// `None` when the type is unknown, the count is not a whole number of
    /// blocks, or the size overflows `u64`.
    pub fn bytes_for(self, n_elements: u64) -> Option<u64> {
        let info = self.info()?;
        if !n_elements.is_multiple_of(info.block_size) {
            return None;
        }
        (n_elements / info.block_size).checked_mul(info.type_size)
    }

    /// Bytes per element as a fraction (for KV cache types: q8_0 = 34/32).
    pub fn bytes_per_element(self) -> Option<f64> {
        self.info()
            .map(|i| i.type_size as f64 / i.block_size as f64)
    }
}

impl std::fmt::Display for GgmlType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name())
    }
}

/// Number of elements of a tensor with these dimensions (`None` on overflow).
pub fn element_count(dims: &[u64]) -> Option<u64> {
    dims.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d))
}

/// Byte size of a tensor from its type and dimensions; `None` when unknown.
pub fn tensor_bytes(ty: GgmlType, dims: &[u64]) -> Option<u64> {
    ty.bytes_for(element_count(dims)?)
}

/// `llama_ftype` names for `general.file_type` (llama.h).
const FTYPES: &[(u32, &str)] = &[
    (0, "ALL_F32"),
    (1, "MOSTLY_F16"),
    (2, "MOSTLY_Q4_0"),
    (3, "MOSTLY_Q4_1"),
    (4, "MOSTLY_Q4_1_SOME_F16"),
    (7, "MOSTLY_Q8_0"),
    (8, "MOSTLY_Q5_0"),
    (9, "MOSTLY_Q5_1"),
    (10, "MOSTLY_Q2_K"),
    (11, "MOSTLY_Q3_K_S"),
    (12, "MOSTLY_Q3_K_M"),
    (13, "MOSTLY_Q3_K_L"),
    (14, "MOSTLY_Q4_K_S"),
    (15, "MOSTLY_Q4_K_M"),
    (16, "MOSTLY_Q5_K_S"),
    (17, "MOSTLY_Q5_K_M"),
    (18, "MOSTLY_Q6_K"),
    (19, "MOSTLY_IQ2_XXS"),
    (20, "MOSTLY_IQ2_XS"),
    (21, "MOSTLY_Q2_K_S"),
    (22, "MOSTLY_IQ3_XS"),
    (23, "MOSTLY_IQ3_XXS"),
    (24, "MOSTLY_IQ1_S"),
    (25, "MOSTLY_IQ4_NL"),
    (26, "MOSTLY_IQ3_S"),
    (27, "MOSTLY_IQ3_M"),
    (28, "MOSTLY_IQ2_S"),
    (29, "MOSTLY_IQ2_M"),
    (30, "MOSTLY_IQ4_XS"),
    (31, "MOSTLY_IQ1_M"),
    (32, "MOSTLY_BF16"),
    (33, "MOSTLY_Q4_0_4_4"),
    (34, "MOSTLY_Q4_0_4_8"),
    (35, "MOSTLY_Q4_0_8_8"),
    (36, "MOSTLY_TQ1_0"),
    (37, "MOSTLY_TQ2_0"),
    (38, "MOSTLY_MXFP4_MOE"),
    (39, "MOSTLY_NVFP4"),
    (40, "MOSTLY_Q1_0"),
    (41, "MOSTLY_Q2_0"),
    (1024, "GUESSED"),
];

/// `general.file_type`: the quantisation a file was made with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct FileType(pub u32);

impl FileType {
    /// llama.h's name (`MOSTLY_Q4_K_M`), `None` for an unknown value.
    pub fn llama_name(self) -> Option<&'static str> {
        FTYPES.iter().find(|r| r.0 == self.0).map(|r| r.1)
    }

    /// The short label users know (`Q4_K_M`, `F16`, `MXFP4_MOE`), or
    /// `ftype<n>` for an unknown value.
    pub fn label(self) -> String {
        match self.llama_name() {
            Some(n) => n
                .strip_prefix("MOSTLY_")
                .or_else(|| n.strip_prefix("ALL_"))
                .unwrap_or(n)
                .to_string(),
            None => format!("ftype{}", self.0),
        }
    }
}

impl std::fmt::Display for FileType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.label())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_gguf_rs_gets_wrong() {
        // BF16: 2 bytes per element.
        assert_eq!(
            tensor_bytes(GgmlType::BF16, &[4096, 4096]),
            Some(33_554_432)
        );
        // F64 and I8.
        assert_eq!(tensor_bytes(GgmlType(28), &[10]), Some(80));
        assert_eq!(tensor_bytes(GgmlType(24), &[10]), Some(10));
        // IQ4_NL: 32-element blocks of 18 bytes.
        assert_eq!(
            tensor_bytes(GgmlType::IQ4_NL, &[4096, 14336]),
            Some(4096 * 14336 / 32 * 18)
        );
        // MXFP4: 32-element blocks of 17 bytes (gpt-oss experts: 2880×2880×128).
        assert_eq!(
            tensor_bytes(GgmlType::MXFP4, &[2880, 2880, 128]),
            Some(2880 * 2880 * 128 / 32 * 17)
        );
        assert_eq!(tensor_bytes(GgmlType(34), &[256]), Some(54)); // TQ1_0
        assert_eq!(tensor_bytes(GgmlType(35), &[512]), Some(132)); // TQ2_0
        assert_eq!(tensor_bytes(GgmlType(16), &[256]), Some(66)); // IQ2_XXS
        assert_eq!(tensor_bytes(GgmlType::Q6_K, &[256, 2]), Some(420));
    }

    #[test]
    fn unknown_types_have_no_size_and_a_name() {
        assert_eq!(GgmlType(31).info(), None); // removed Q4_0_4_4
        assert_eq!(tensor_bytes(GgmlType(4242), &[32]), None);
        assert_eq!(GgmlType(4242).name(), "type4242");
        // Not a whole number of blocks.
        assert_eq!(tensor_bytes(GgmlType::Q4_K, &[100]), None);
        // Overflow is not a panic.
        assert_eq!(tensor_bytes(GgmlType::F32, &[u64::MAX, 2]), None);
    }

    #[test]
    fn names_round_trip() {
        assert_eq!(GgmlType::from_name("q8_0"), Some(GgmlType::Q8_0));
        assert_eq!(GgmlType::from_name("bf16"), Some(GgmlType::BF16));
        assert_eq!(GgmlType::MXFP4.to_string(), "MXFP4");
        assert_eq!(GgmlType::Q8_0.bytes_per_element(), Some(34.0 / 32.0));
    }

    #[test]
    fn file_types_follow_llama_ftype() {
        assert_eq!(FileType(15).label(), "Q4_K_M");
        assert_eq!(FileType(18).label(), "Q6_K");
        assert_eq!(FileType(38).label(), "MXFP4_MOE");
        assert_eq!(FileType(3).label(), "Q4_1");
        assert_eq!(FileType(0).label(), "F32");
        assert_eq!(FileType(32).llama_name(), Some("MOSTLY_BF16"));
        assert_eq!(FileType(999).label(), "ftype999");
    }
}
