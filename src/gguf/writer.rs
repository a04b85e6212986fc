//! Deterministic GGUF (v3) writer for fixtures, fuzz corpora and benches.
//!
//! Real model files are gigabytes; what our code reads is the header. The
//! writer lays out tensor infos with aligned offsets exactly as llama.cpp
//! does, and fills the data section with zeros or leaves it sparse
//! (`File::set_len`), so a "35 GB model" costs a few kilobytes of disk.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use super::reader::{Array, Value, DEFAULT_ALIGNMENT, GGUF_MAGIC};
use super::types::{tensor_bytes, GgmlType};

/// A tensor to describe in the header.
#[derive(Debug, Clone)]
pub struct TensorSpec {
    pub name: String,
    pub dims: Vec<u64>,
    pub ty: GgmlType,
    /// Byte size for a type the table does not know (else computed).
    pub bytes: Option<u64>,
}

impl TensorSpec {
    pub fn new(name: impl Into<String>, dims: &[u64], ty: GgmlType) -> TensorSpec {
        TensorSpec {
            name: name.into(),
            dims: dims.to_vec(),
            ty,
            bytes: None,
        }
    }

    fn size(&self) -> u64 {
        self.bytes
            .or_else(|| tensor_bytes(self.ty, &self.dims))
            .unwrap_or(0)
    }
}

/// How to fill the data section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Data {
    /// Write zero bytes (only for tiny tensors).
    Zeros,
    /// Extend the file with `set_len`: sparse on every common file system.
    Sparse,
    /// Write the header only (a truncated file).
    None,
}

/// Builder for a GGUF file.
#[derive(Debug, Clone)]
pub struct GgufWriter {
    pub version: u32,
    pub metadata: Vec<(String, Value)>,
    pub tensors: Vec<TensorSpec>,
}

impl Default for GgufWriter {
    fn default() -> Self {
        GgufWriter {
            version: 3,
            metadata: Vec::new(),
            tensors: Vec::new(),
        }
    }
}

impl GgufWriter {
    pub fn new() -> GgufWriter {
        GgufWriter::default()
    }

    /// Adds (or replaces) a metadata key.
    pub fn kv(&mut self, key: &str, value: Value) -> &mut Self {
        if let Some(slot) = self.metadata.iter_mut().find(|(k, _)| k == key) {
            slot.1 = value;
        } else {
            self.metadata.push((key.to_string(), value));
        }
        self
    }

    pub fn u32(&mut self, key: &str, v: u32) -> &mut Self {
        self.kv(key, Value::U32(v))
    }

    pub fn f32(&mut self, key: &str, v: f32) -> &mut Self {
        self.kv(key, Value::F32(v))
    }

    pub fn str(&mut self, key: &str, v: &str) -> &mut Self {
        self.kv(key, Value::String(v.to_string()))
    }

    pub fn tensor(&mut self, name: impl Into<String>, dims: &[u64], ty: GgmlType) -> &mut Self {
        self.tensors.push(TensorSpec::new(name, dims, ty));
        self
    }

    fn alignment(&self) -> u64 {
        self.metadata
            .iter()
            .find(|(k, _)| k == "general.alignment")
            .and_then(|(_, v)| v.as_u64())
            .filter(|a| *a > 0 && a.is_power_of_two())
            .unwrap_or(DEFAULT_ALIGNMENT)
    }

    /// Each tensor's offset in the data section (aligned, in order).
    pub fn offsets(&self) -> Vec<u64> {
        let align = self.alignment();
        let mut at = 0u64;
        self.tensors
            .iter()
            .map(|t| {
                let off = at;
                at = (at + t.size()).next_multiple_of(align);
                off
            })
            .collect()
    }

    /// Bytes of the data section: the end of the last tensor.
    pub fn data_len(&self) -> u64 {
        let offs = self.offsets();
        match (self.tensors.last(), offs.last()) {
            (Some(t), Some(o)) => o + t.size(),
            _ => 0,
        }
    }

    /// Sum of the tensors' own sizes (no alignment padding).
    pub fn data_len_tensors(&self) -> u64 {
        self.tensors.iter().map(TensorSpec::size).sum()
    }

    /// The header, padded to the data offset.
    pub fn header_bytes(&self) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&GGUF_MAGIC);
        b.extend_from_slice(&self.version.to_le_bytes());
        b.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        b.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        for (k, v) in &self.metadata {
            put_str(&mut b, k);
            b.extend_from_slice(&v.value_type().id().to_le_bytes());
            put_value(&mut b, v);
        }
        for (t, off) in self.tensors.iter().zip(self.offsets()) {
            put_str(&mut b, &t.name);
            b.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                b.extend_from_slice(&d.to_le_bytes());
            }
            b.extend_from_slice(&t.ty.0.to_le_bytes());
            b.extend_from_slice(&off.to_le_bytes());
        }
        let padded = (b.len() as u64).next_multiple_of(self.alignment());
        b.resize(padded as usize, 0);
        b
    }

    /// The whole file in memory (header plus zeroed data): for small fixtures.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = self.header_bytes();
        let len = b.len() as u64 + self.data_len();
        b.resize(len as usize, 0);
        b
    }

    /// Writes the file; returns its length.
    pub fn write(&self, path: &Path, data: Data) -> std::io::Result<u64> {
        let header = self.header_bytes();
        let file = File::create(path)?;
        let mut w = BufWriter::new(file);
        w.write_all(&header)?;
        let total = header.len() as u64 + self.data_len();
        match data {
            Data::None => {}
            Data::Zeros => {
                let zeros = [0u8; 64 * 1024];
                let mut left = self.data_len();
                while left > 0 {
                    let n = left.min(zeros.len() as u64) as usize;
                    w.write_all(&zeros[..n])?;
                    left -= n as u64;
                }
            }
            Data::Sparse => {}
        }
        let file = w.into_inner().map_err(|e| e.into_error())?;
        if data == Data::Sparse {
            file.set_len(total)?;
        }
        file.sync_all()?;
        Ok(file.metadata()?.len())
    }
}

fn put_str(b: &mut Vec<u8>, s: &str) {
    b.extend_from_slice(&(s.len() as u64).to_le_bytes());
    b.extend_from_slice(s.as_bytes());
}

fn put_value(b: &mut Vec<u8>, v: &Value) {
    match v {
        Value::U8(x) => b.push(*x),
        Value::I8(x) => b.extend_from_slice(&x.to_le_bytes()),
        Value::U16(x) => b.extend_from_slice(&x.to_le_bytes()),
        Value::I16(x) => b.extend_from_slice(&x.to_le_bytes()),
        Value::U32(x) => b.extend_from_slice(&x.to_le_bytes()),
        Value::I32(x) => b.extend_from_slice(&x.to_le_bytes()),
        Value::F32(x) => b.extend_from_slice(&x.to_le_bytes()),
        Value::U64(x) => b.extend_from_slice(&x.to_le_bytes()),
        Value::I64(x) => b.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => b.extend_from_slice(&x.to_le_bytes()),
        Value::Bool(x) => b.push(u8::from(*x)),
        Value::String(s) => put_str(b, s),
        Value::Array(a) => put_array(b, a),
    }
}

fn put_array(b: &mut Vec<u8>, a: &Array) {
    b.extend_from_slice(&a.element_type().id().to_le_bytes());
    b.extend_from_slice(&(a.len() as u64).to_le_bytes());
    macro_rules! each {
        ($v:expr) => {
            for x in $v {
                b.extend_from_slice(&x.to_le_bytes());
            }
        };
    }
    match a {
        Array::U8(v) => b.extend_from_slice(v),
        Array::I8(v) => each!(v),
        Array::U16(v) => each!(v),
        Array::I16(v) => each!(v),
        Array::U32(v) => each!(v),
        Array::I32(v) => each!(v),
        Array::F32(v) => each!(v),
        Array::U64(v) => each!(v),
        Array::I64(v) => each!(v),
        Array::F64(v) => each!(v),
        Array::Bool(v) => b.extend(v.iter().map(|&x| u8::from(x))),
        Array::String(v) => v.iter().for_each(|s| put_str(b, s)),
        Array::Array(v) => v.iter().for_each(|x| put_array(b, x)),
    }
}
