//! GGUF header reader: magic, version, metadata, tensor infos, data offset.
//!
//! It reads only the header, through a buffer, from any `std::io::Read`, so
//! the same code serves a local file and a range-fetched prefix of a remote
//! one. Every length in the file is untrusted: strings and arrays are read
//! incrementally (never `with_capacity(len)`), bounded by the bytes that are
//! left when the input length is known, and nesting is capped. An input that
//! ends too early gives [`GgufError::UnexpectedEof`] with the number of bytes
//! the header needs at least, so a remote caller can fetch more and retry.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use serde::Serialize;

use super::types::{tensor_bytes, GgmlType};

/// The four bytes every GGUF file starts with.
pub const GGUF_MAGIC: [u8; 4] = *b"GGUF";
/// Alignment of the tensor data when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// Deepest array nesting accepted (llama.cpp writes at most 2 levels).
pub const MAX_ARRAY_DEPTH: usize = 8;
/// Most dimensions a ggml tensor has (`GGML_MAX_DIMS`).
pub const MAX_DIMS: u32 = 4;
/// Read buffer: large enough that a header is a handful of `read` calls.
const BUF_SIZE: usize = 256 * 1024;
/// Chunk in which string bytes are read when their length is untrusted.
const CHUNK: u64 = 64 * 1024;

/// Why a header could not be read. Each variant names the input (file path or
/// URL) and the byte offset where the problem was found.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("{file}: cannot read: {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: not a GGUF file: expected magic \"GGUF\" at byte 0, found {found:02x?}")]
    BadMagic { file: String, found: Vec<u8> },
    #[error("{file}: unsupported GGUF version {version} at byte 4 (expected 2 or 3)")]
    UnsupportedVersion { file: String, version: u32 },
    #[error(
        "{file}: input ends at byte {available} while reading {what} at byte {offset}: \
         the header needs at least {needed} bytes"
    )]
    UnexpectedEof {
        file: String,
        offset: u64,
        what: String,
        /// Lower bound on the header's length: fetch at least this much.
        needed: u64,
        /// Bytes the input had.
        available: u64,
    },
    #[error("{file}: at byte {offset}: {what}: expected {expected}, found {found}")]
    Invalid {
        file: String,
        offset: u64,
        what: String,
        expected: String,
        found: String,
    },
    #[error(
        "{file}: truncated: tensor '{tensor}' ends at byte {needed} but the file has {actual} bytes \
         ({missing} bytes missing)"
    )]
    Truncated {
        file: String,
        tensor: String,
        needed: u64,
        actual: u64,
        missing: u64,
    },
}

impl GgufError {
    /// For a prefix read: how many bytes of header to fetch before retrying.
    pub fn needed_bytes(&self) -> Option<u64> {
        match self {
            GgufError::UnexpectedEof { needed, .. } => Some(*needed),
            _ => None,
        }
    }
}

/// GGUF metadata value types (the numbers stored in the file).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ValueType {
    U8,
    I8,
    U16,
    I16,
    U32,
    I32,
    F32,
    Bool,
    String,
    Array,
    U64,
    I64,
    F64,
}

impl ValueType {
    /// The type for a stored id; `None` for ids the format does not define.
    pub fn from_id(id: u32) -> Option<ValueType> {
        Some(match id {
            0 => ValueType::U8,
            1 => ValueType::I8,
            2 => ValueType::U16,
            3 => ValueType::I16,
            4 => ValueType::U32,
            5 => ValueType::I32,
            6 => ValueType::F32,
            7 => ValueType::Bool,
            8 => ValueType::String,
            9 => ValueType::Array,
            10 => ValueType::U64,
            11 => ValueType::I64,
            12 => ValueType::F64,
            _ => return None,
        })
    }

    /// The id written to a file.
    pub fn id(self) -> u32 {
        match self {
            ValueType::U8 => 0,
            ValueType::I8 => 1,
            ValueType::U16 => 2,
            ValueType::I16 => 3,
            ValueType::U32 => 4,
            ValueType::I32 => 5,
            ValueType::F32 => 6,
            ValueType::Bool => 7,
            ValueType::String => 8,
            ValueType::Array => 9,
            ValueType::U64 => 10,
            ValueType::I64 => 11,
            ValueType::F64 => 12,
        }
    }

    /// Fewest bytes one value of this type takes in a file: the bound that
    /// keeps an array's claimed length honest.
    fn min_encoded_len(self) -> u64 {
        match self {
            ValueType::U8 | ValueType::I8 | ValueType::Bool => 1,
            ValueType::U16 | ValueType::I16 => 2,
            ValueType::U32 | ValueType::I32 | ValueType::F32 => 4,
            ValueType::U64 | ValueType::I64 | ValueType::F64 | ValueType::String => 8,
            ValueType::Array => 12,
        }
    }
}

/// A metadata value. Arrays are typed vectors so a 49,152-entry token table
/// costs what its bytes cost, not an enum per entry.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    Array(Array),
    U64(u64),
    I64(i64),
    F64(f64),
}

/// A homogeneous metadata array (arrays of arrays nest).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Array {
    U8(Vec<u8>),
    I8(Vec<i8>),
    U16(Vec<u16>),
    I16(Vec<i16>),
    U32(Vec<u32>),
    I32(Vec<i32>),
    F32(Vec<f32>),
    Bool(Vec<bool>),
    String(Vec<String>),
    Array(Vec<Array>),
    U64(Vec<u64>),
    I64(Vec<i64>),
    F64(Vec<f64>),
}

impl Array {
    pub fn len(&self) -> usize {
        match self {
            Array::U8(v) => v.len(),
            Array::I8(v) => v.len(),
            Array::U16(v) => v.len(),
            Array::I16(v) => v.len(),
            Array::U32(v) => v.len(),
            Array::I32(v) => v.len(),
            Array::F32(v) => v.len(),
            Array::Bool(v) => v.len(),
            Array::String(v) => v.len(),
            Array::Array(v) => v.len(),
            Array::U64(v) => v.len(),
            Array::I64(v) => v.len(),
            Array::F64(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The element type.
    pub fn element_type(&self) -> ValueType {
        match self {
            Array::U8(_) => ValueType::U8,
            Array::I8(_) => ValueType::I8,
            Array::U16(_) => ValueType::U16,
            Array::I16(_) => ValueType::I16,
            Array::U32(_) => ValueType::U32,
            Array::I32(_) => ValueType::I32,
            Array::F32(_) => ValueType::F32,
            Array::Bool(_) => ValueType::Bool,
            Array::String(_) => ValueType::String,
            Array::Array(_) => ValueType::Array,
            Array::U64(_) => ValueType::U64,
            Array::I64(_) => ValueType::I64,
            Array::F64(_) => ValueType::F64,
        }
    }

    /// Integer elements as `i128` (per-layer hyperparameters such as
    /// `head_count_kv`); `None` for non-integer arrays.
    pub fn as_integers(&self) -> Option<Vec<i128>> {
        Some(match self {
            Array::U8(v) => v.iter().map(|&x| x.into()).collect(),
            Array::I8(v) => v.iter().map(|&x| x.into()).collect(),
            Array::U16(v) => v.iter().map(|&x| x.into()).collect(),
            Array::I16(v) => v.iter().map(|&x| x.into()).collect(),
            Array::U32(v) => v.iter().map(|&x| x.into()).collect(),
            Array::I32(v) => v.iter().map(|&x| x.into()).collect(),
            Array::U64(v) => v.iter().map(|&x| x.into()).collect(),
            Array::I64(v) => v.iter().map(|&x| x.into()).collect(),
            Array::Bool(v) => v.iter().map(|&x| i128::from(x)).collect(),
            _ => return None,
        })
    }
}

impl Value {
    pub fn value_type(&self) -> ValueType {
        match self {
            Value::U8(_) => ValueType::U8,
            Value::I8(_) => ValueType::I8,
            Value::U16(_) => ValueType::U16,
            Value::I16(_) => ValueType::I16,
            Value::U32(_) => ValueType::U32,
            Value::I32(_) => ValueType::I32,
            Value::F32(_) => ValueType::F32,
            Value::Bool(_) => ValueType::Bool,
            Value::String(_) => ValueType::String,
            Value::Array(_) => ValueType::Array,
            Value::U64(_) => ValueType::U64,
            Value::I64(_) => ValueType::I64,
            Value::F64(_) => ValueType::F64,
        }
    }

    /// Any non-negative integer (files disagree on u32/i32/u64 for counts).
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v.into()),
            Value::U16(v) => Some(v.into()),
            Value::U32(v) => Some(v.into()),
            Value::U64(v) => Some(v),
            Value::I8(v) => u64::try_from(v).ok(),
            Value::I16(v) => u64::try_from(v).ok(),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            Value::Bool(v) => Some(v.into()),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(v.into()),
            Value::F64(v) => Some(v),
            _ => self.as_u64().map(|v| v as f64),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&Array> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }
}

/// One tensor's entry in the header.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TensorInfo {
    pub name: String,
    /// ggml order: `dims[0]` is the row length.
    pub dims: Vec<u64>,
    /// Raw type id kept even when unknown.
    pub ty: GgmlType,
    /// Offset from the start of the tensor data section.
    pub offset: u64,
}

impl TensorInfo {
    pub fn n_elements(&self) -> Option<u64> {
        super::types::element_count(&self.dims)
    }

    /// Bytes of tensor data, `None` for an unknown type.
    pub fn n_bytes(&self) -> Option<u64> {
        tensor_bytes(self.ty, &self.dims)
    }
}

/// A parsed GGUF header.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Header {
    /// Where it came from (path or URL), for messages.
    pub source: String,
    pub version: u32,
    /// Key/value pairs in file order.
    pub metadata: Vec<(String, Value)>,
    pub tensors: Vec<TensorInfo>,
    /// `general.alignment` or 32.
    pub alignment: u64,
    /// Bytes up to the end of the last tensor info (before padding).
    pub header_len: u64,
    /// Absolute offset of the tensor data section.
    pub data_offset: u64,
}

impl Header {
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn get_u64(&self, key: &str) -> Option<u64> {
        self.get(key).and_then(Value::as_u64)
    }

    pub fn get_f64(&self, key: &str) -> Option<f64> {
        self.get(key).and_then(Value::as_f64)
    }

    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(Value::as_str)
    }

    pub fn get_array(&self, key: &str) -> Option<&Array> {
        self.get(key).and_then(Value::as_array)
    }

    /// `general.architecture`.
    pub fn architecture(&self) -> Option<&str> {
        self.get_str("general.architecture")
    }

    /// End of the tensor data as the header describes it (absolute), and the
    /// tensor that ends last. Tensors of unknown type count by their start
    /// only, so this is a lower bound when such tensors are present.
    pub fn data_end(&self) -> (u64, Option<&TensorInfo>) {
        let mut end = self.data_offset;
        let mut last = None;
        for t in &self.tensors {
            let e = self
                .data_offset
                .saturating_add(t.offset)
                .saturating_add(t.n_bytes().unwrap_or(0));
            if e > end || last.is_none() {
                end = end.max(e);
                last = Some(t);
            }
        }
        (end, last)
    }

    /// The truncation check: the file must hold every tensor's data.
    pub fn check_file_len(&self, file_len: u64) -> Result<(), GgufError> {
        let (end, last) = self.data_end();
        if end > file_len {
            return Err(GgufError::Truncated {
                file: self.source.clone(),
                tensor: last.map(|t| t.name.clone()).unwrap_or_default(),
                needed: end,
                actual: file_len,
                missing: end - file_len,
            });
        }
        Ok(())
    }
}

/// Reads a header from any reader. `input_len` is how many bytes the reader
/// will yield, when known (a file's length, or a fetched prefix's length): it
/// bounds every claimed length up front.
pub fn read_header<R: Read>(
    reader: R,
    source: &str,
    input_len: Option<u64>,
) -> Result<Header, GgufError> {
    let mut p = Parser {
        r: BufReader::with_capacity(BUF_SIZE, reader),
        pos: 0,
        file: source,
        input_len,
    };
    p.header()
}

/// Reads a header from bytes in memory (a remote prefix): on
/// [`GgufError::UnexpectedEof`], fetch `needed_bytes()` and call again.
pub fn read_header_bytes(bytes: &[u8], source: &str) -> Result<Header, GgufError> {
    read_header(bytes, source, Some(bytes.len() as u64))
}

/// Reads a header through a range fetcher (HTTP range requests, a shard on
/// a slow disk): fetches `initial` bytes, and while the header is incomplete
/// fetches only the missing bytes up to the larger of what the parser says
/// it needs and twice what it has. The bytes fetched stay below twice the
/// header's length whenever `initial` is below it. `total_len` (e.g. from a
/// HEAD request) caps every request. Returns the header and the bytes
/// fetched.
///
/// `fetch(start, end)` must return the bytes `start..end` (fewer only at the
/// end of the file).
pub fn read_header_incremental<F>(
    source: &str,
    initial: u64,
    total_len: Option<u64>,
    mut fetch: F,
) -> Result<(Header, u64), GgufError>
where
    F: FnMut(u64, u64) -> std::io::Result<Vec<u8>>,
{
    let cap = |n: u64| total_len.map_or(n, |t| n.min(t));
    let mut buf: Vec<u8> = Vec::new();
    let mut want = cap(initial.max(64));
    loop {
        let have = buf.len() as u64;
        if want > have {
            let chunk = fetch(have, want).map_err(|e| GgufError::Io {
                file: source.to_string(),
                source: e,
            })?;
            // Never trust the fetcher to return what was asked.
            let take = chunk.len().min((want - have) as usize);
            buf.extend_from_slice(&chunk[..take]);
        }
        let got = buf.len() as u64;
        let complete = total_len.is_some_and(|t| got >= t) || got < want;
        match read_header(&buf[..], source, Some(got)) {
            Ok(h) => return Ok((h, got)),
            Err(e) => match e.needed_bytes() {
                Some(needed) if !complete && got > have => {
                    want = cap(needed.max(got.saturating_mul(2)));
                }
                _ => return Err(e),
            },
        }
    }
}

/// Reads a local file's header and checks that the file holds all tensor data.
pub fn read_file(path: &Path) -> Result<Header, GgufError> {
    let name = path.display().to_string();
    let io = |source| GgufError::Io {
        file: name.clone(),
        source,
    };
    let file = File::open(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    let header = read_header(file, &name, Some(len))?;
    header.check_file_len(len)?;
    Ok(header)
}

struct Parser<'a, R: Read> {
    r: BufReader<R>,
    pos: u64,
    file: &'a str,
    input_len: Option<u64>,
}

impl<R: Read> Parser<'_, R> {
    fn header(&mut self) -> Result<Header, GgufError> {
        let magic = self.bytes_fixed::<4>("magic")?;
        if magic != GGUF_MAGIC {
            return Err(GgufError::BadMagic {
                file: self.file.to_string(),
                found: magic.to_vec(),
            });
        }
        let version = self.u32("version")?;
        if version != 2 && version != 3 {
            return Err(GgufError::UnsupportedVersion {
                file: self.file.to_string(),
                version,
            });
        }
        let n_tensors = self.u64("tensor count")?;
        let n_kv = self.u64("metadata count")?;
        // A key/value pair is at least 8 (key length) + 4 (type) + 1 bytes;
        // a tensor info at least 8 + 4 + 4 + 8.
        self.check_count(n_kv, 13, "metadata count")?;

        let mut metadata = Vec::new();
        for i in 0..n_kv {
            let key_at = self.pos;
            let key = self.string(&format!("metadata key #{i}"))?;
            let ty_at = self.pos;
            let ty_id = self.u32(&format!("type of '{key}'"))?;
            let ty = self.value_type(ty_id, ty_at, &format!("type of '{key}'"))?;
            let value = self.value(ty, &key, 0)?;
            if metadata.iter().any(|(k, _): &(String, Value)| *k == key) {
                return Err(self.invalid(key_at, "metadata key", "a unique key", &key));
            }
            metadata.push((key, value));
        }

        self.check_count(n_tensors, 24, "tensor count")?;
        let mut tensors = Vec::new();
        for i in 0..n_tensors {
            let name = self.string(&format!("tensor #{i} name"))?;
            let dims_at = self.pos;
            let n_dims = self.u32(&format!("dimension count of '{name}'"))?;
            if n_dims > MAX_DIMS {
                return Err(self.invalid(
                    dims_at,
                    &format!("dimension count of '{name}'"),
                    &format!("at most {MAX_DIMS}"),
                    &n_dims.to_string(),
                ));
            }
            let mut dims = Vec::with_capacity(n_dims as usize);
            for d in 0..n_dims {
                dims.push(self.u64(&format!("dimension {d} of '{name}'"))?);
            }
            let ty = GgmlType(self.u32(&format!("type of '{name}'"))?);
            let offset = self.u64(&format!("data offset of '{name}'"))?;
            if super::types::element_count(&dims).is_none() {
                return Err(self.invalid(
                    dims_at,
                    &format!("dimensions of '{name}'"),
                    "an element count that fits 64 bits",
                    &format!("{dims:?}"),
                ));
            }
            tensors.push(TensorInfo {
                name,
                dims,
                ty,
                offset,
            });
        }

        let alignment = match metadata.iter().find(|(k, _)| k == "general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some((_, v)) => match v.as_u64() {
                Some(a) if a > 0 && a.is_power_of_two() => a,
                _ => {
                    return Err(self.invalid(
                        0,
                        "general.alignment",
                        "a power of two",
                        &format!("{v:?}"),
                    ))
                }
            },
        };
        let header_len = self.pos;
        let data_offset = header_len
            .checked_next_multiple_of(alignment)
            .ok_or_else(|| {
                self.invalid(header_len, "data offset", "a 64-bit offset", "overflow")
            })?;
        Ok(Header {
            source: self.file.to_string(),
            version,
            metadata,
            tensors,
            alignment,
            header_len,
            data_offset,
        })
    }

    fn invalid(&self, offset: u64, what: &str, expected: &str, found: &str) -> GgufError {
        GgufError::Invalid {
            file: self.file.to_string(),
            offset,
            what: what.to_string(),
            expected: expected.to_string(),
            found: found.to_string(),
        }
    }

    fn eof(&self, what: &str, at: u64, needed: u64) -> GgufError {
        GgufError::UnexpectedEof {
            file: self.file.to_string(),
            offset: at,
            what: what.to_string(),
            needed,
            available: self.input_len.unwrap_or(self.pos).max(self.pos),
        }
    }

    /// With a known input length, `count` items of at least `min_len` bytes
    /// must fit in what is left; otherwise say how much input is needed.
    fn check_count(&self, count: u64, min_len: u64, what: &str) -> Result<(), GgufError> {
        if let Some(len) = self.input_len {
            let need = count
                .checked_mul(min_len)
                .and_then(|b| b.checked_add(self.pos));
            match need {
                Some(n) if n <= len => {}
                Some(n) => return Err(self.eof(what, self.pos, n)),
                None => {
                    return Err(self.invalid(
                        self.pos,
                        what,
                        "a count that fits the input",
                        &count.to_string(),
                    ))
                }
            }
        }
        Ok(())
    }

    fn value_type(&self, id: u32, at: u64, what: &str) -> Result<ValueType, GgufError> {
        ValueType::from_id(id)
            .ok_or_else(|| self.invalid(at, what, "a value type 0..=12", &id.to_string()))
    }

    fn fill(&mut self, buf: &mut [u8], what: &str) -> Result<(), GgufError> {
        let at = self.pos;
        let mut done = 0;
        while done < buf.len() {
            match self.r.read(&mut buf[done..]) {
                Ok(0) => return Err(self.eof(what, at, at + buf.len() as u64)),
                Ok(n) => {
                    done += n;
                    self.pos += n as u64;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(GgufError::Io {
                        file: self.file.to_string(),
                        source: e,
                    })
                }
            }
        }
        Ok(())
    }

    fn bytes_fixed<const N: usize>(&mut self, what: &str) -> Result<[u8; N], GgufError> {
        let mut b = [0u8; N];
        self.fill(&mut b, what)?;
        Ok(b)
    }

    fn u32(&mut self, what: &str) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.bytes_fixed(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.bytes_fixed(what)?))
    }

    /// A length-prefixed string, read in chunks so a lying length costs no
    /// more memory than the bytes actually present. Invalid UTF-8 is replaced,
    /// not rejected (a few tokenizers store raw bytes).
    fn string(&mut self, what: &str) -> Result<String, GgufError> {
        let at = self.pos;
        let len = self.u64(what)?;
        let end = self
            .pos
            .checked_add(len)
            .ok_or_else(|| self.invalid(at, what, "a string length that fits", &len.to_string()))?;
        if let Some(input) = self.input_len {
            if end > input {
                return Err(self.eof(what, at, end));
            }
        }
        let mut buf = Vec::new();
        let mut left = len;
        while left > 0 {
            let n = left.min(CHUNK) as usize;
            let start = buf.len();
            buf.resize(start + n, 0);
            self.fill(&mut buf[start..], what).map_err(|e| match e {
                GgufError::UnexpectedEof { .. } => self.eof(what, at, end),
                other => other,
            })?;
            left -= n as u64;
        }
        Ok(match String::from_utf8(buf) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        })
    }

    fn value(&mut self, ty: ValueType, key: &str, depth: usize) -> Result<Value, GgufError> {
        Ok(match ty {
            ValueType::U8 => Value::U8(u8::from_le_bytes(self.bytes_fixed(key)?)),
            ValueType::I8 => Value::I8(i8::from_le_bytes(self.bytes_fixed(key)?)),
            ValueType::U16 => Value::U16(u16::from_le_bytes(self.bytes_fixed(key)?)),
            ValueType::I16 => Value::I16(i16::from_le_bytes(self.bytes_fixed(key)?)),
            ValueType::U32 => Value::U32(u32::from_le_bytes(self.bytes_fixed(key)?)),
            ValueType::I32 => Value::I32(i32::from_le_bytes(self.bytes_fixed(key)?)),
            ValueType::F32 => Value::F32(f32::from_le_bytes(self.bytes_fixed(key)?)),
            ValueType::U64 => Value::U64(u64::from_le_bytes(self.bytes_fixed(key)?)),
            ValueType::I64 => Value::I64(i64::from_le_bytes(self.bytes_fixed(key)?)),
            ValueType::F64 => Value::F64(f64::from_le_bytes(self.bytes_fixed(key)?)),
            ValueType::Bool => Value::Bool(self.bool(key)?),
            ValueType::String => Value::String(self.string(key)?),
            ValueType::Array => Value::Array(self.array(key, depth)?),
        })
    }

    fn bool(&mut self, what: &str) -> Result<bool, GgufError> {
        let at = self.pos;
        match self.bytes_fixed::<1>(what)?[0] {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(self.invalid(at, what, "a bool (0 or 1)", &b.to_string())),
        }
    }

    fn array(&mut self, key: &str, depth: usize) -> Result<Array, GgufError> {
        let at = self.pos;
        if depth >= MAX_ARRAY_DEPTH {
            return Err(self.invalid(
                at,
                key,
                &format!("arrays nested at most {MAX_ARRAY_DEPTH} deep"),
                "deeper nesting",
            ));
        }
        let ty_id = self.u32(key)?;
        let ty = self.value_type(ty_id, at, &format!("element type of '{key}'"))?;
        let count = self.u64(key)?;
        self.check_count(count, ty.min_encoded_len(), key)?;
        // No `with_capacity(count)`: vectors grow with the bytes really read.
        macro_rules! fixed {
            ($variant:ident, $t:ty) => {{
                let mut v: Vec<$t> = Vec::new();
                for _ in 0..count {
                    v.push(<$t>::from_le_bytes(self.bytes_fixed(key)?));
                }
                Array::$variant(v)
            }};
        }
        Ok(match ty {
            ValueType::U8 => fixed!(U8, u8),
            ValueType::I8 => fixed!(I8, i8),
            ValueType::U16 => fixed!(U16, u16),
            ValueType::I16 => fixed!(I16, i16),
            ValueType::U32 => fixed!(U32, u32),
            ValueType::I32 => fixed!(I32, i32),
            ValueType::F32 => fixed!(F32, f32),
            ValueType::U64 => fixed!(U64, u64),
            ValueType::I64 => fixed!(I64, i64),
            ValueType::F64 => fixed!(F64, f64),
            ValueType::Bool => {
                let mut v = Vec::new();
                for _ in 0..count {
                    v.push(self.bool(key)?);
                }
                Array::Bool(v)
            }
            ValueType::String => {
                let mut v = Vec::new();
                for _ in 0..count {
                    v.push(self.string(key)?);
                }
                Array::String(v)
            }
            ValueType::Array => {
                let mut v = Vec::new();
                for _ in 0..count {
                    v.push(self.array(key, depth + 1)?);
                }
                Array::Array(v)
            }
        })
    }
}
