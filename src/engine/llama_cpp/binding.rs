//! The few parts of llama.cpp's C API (`llama.h`, through `llama-cpp-sys-2`)
//! the worker calls, as owned types that free what they hold.
//!
//! Why not the `llama-cpp-2` crate: it wraps far more than the worker needs,
//! and not the one part of llama.cpp's `common` library onboard uses, MTP
//! speculative decoding (`llama_rs_mtp_speculative_*`, wrapped in
//! [`MtpDrafter`]). Everything else here is `llama.h`.

use llama_cpp_sys_2 as sys;
use std::ffi::{c_char, CStr, CString};
use std::marker::PhantomData;
use std::path::Path;
use std::ptr::NonNull;

pub type Token = sys::llama_token;

/// llama.cpp's process-wide state, initialised once and freed last.
pub struct Backend(());

impl Backend {
    pub fn init() -> Self {
        // SAFETY: no preconditions; paired with `llama_backend_free` in Drop.
        unsafe { sys::llama_backend_init() };
        Backend(())
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        // SAFETY: initialised in `init`; models and contexts borrow the
        // backend, so they are gone by now.
        unsafe { sys::llama_backend_free() };
    }
}

/// A loaded model (or only its vocabulary).
pub struct Model<'b> {
    ptr: NonNull<sys::llama_model>,
    _backend: PhantomData<&'b Backend>,
}

impl<'b> Model<'b> {
    /// `None` when llama.cpp refuses the file; its reason went to the log.
    pub fn load(
        _backend: &'b Backend,
        path: &Path,
        gpu_layers: i32,
        vocab_only: bool,
        load_mtp: bool,
    ) -> Option<Self> {
        use std::os::unix::ffi::OsStrExt;
        let path = CString::new(path.as_os_str().as_bytes()).ok()?;
        // SAFETY: the defaults are plain data; the path is NUL-terminated and
        // outlives the call.
        let ptr = unsafe {
            let mut params = sys::llama_model_default_params();
            params.n_gpu_layers = gpu_layers;
            params.vocab_only = vocab_only;
            params.load_mtp = load_mtp;
            sys::llama_model_load_from_file(path.as_ptr(), params)
        };
        NonNull::new(ptr).map(|ptr| Model {
            ptr,
            _backend: PhantomData,
        })
    }

    pub fn n_ctx_train(&self) -> u32 {
        // SAFETY: a live model.
        let n = unsafe { sys::llama_model_n_ctx_train(self.ptr.as_ptr()) };
        u32::try_from(n).unwrap_or(0)
    }

    /// Multi-token-prediction blocks the file carries (0 for most models).
    pub fn n_layer_nextn(&self) -> u32 {
        // SAFETY: a live model.
        let n = unsafe { sys::llama_model_n_layer_nextn(self.ptr.as_ptr()) };
        u32::try_from(n).unwrap_or(0)
    }

    pub fn vocab(&self) -> Vocab<'_> {
        Vocab {
            // SAFETY: a live model; the vocabulary lives as long as it.
            ptr: unsafe { sys::llama_model_get_vocab(self.ptr.as_ptr()) },
            _model: PhantomData,
        }
    }

    /// The chat template stored in the GGUF, if any.
    pub fn chat_template(&self) -> Option<CString> {
        // SAFETY: a live model; a null name asks for the default template;
        // the returned string is owned by the model and copied at once.
        unsafe {
            let p = sys::llama_model_chat_template(self.ptr.as_ptr(), std::ptr::null());
            (!p.is_null()).then(|| CStr::from_ptr(p).to_owned())
        }
    }
}

impl Drop for Model<'_> {
    fn drop(&mut self) {
        // SAFETY: owned, freed once; contexts borrow the model.
        unsafe { sys::llama_model_free(self.ptr.as_ptr()) };
    }
}

#[derive(Clone, Copy)]
pub struct Vocab<'m> {
    ptr: *const sys::llama_vocab,
    _model: PhantomData<&'m ()>,
}

impl Vocab<'_> {
    /// Tokens of `text`; `add_special` adds BOS/EOS as the model wants,
    /// `parse_special` reads control tokens written in the text.
    pub fn tokenize(
        &self,
        text: &str,
        add_special: bool,
        parse_special: bool,
    ) -> Result<Vec<Token>, String> {
        let len = i32::try_from(text.len())
            .map_err(|_| "the text is too long to tokenize".to_string())?;
        let mut tokens: Vec<Token> = vec![0; text.len() + 2];
        for _ in 0..2 {
            let capacity = i32::try_from(tokens.len()).unwrap_or(i32::MAX);
            // SAFETY: `text` is valid for `len` bytes, `tokens` for
            // `capacity` tokens; llama.cpp writes at most that many.
            let n = unsafe {
                sys::llama_tokenize(
                    self.ptr,
                    text.as_ptr().cast::<c_char>(),
                    len,
                    tokens.as_mut_ptr(),
                    capacity,
                    add_special,
                    parse_special,
                )
            };
            if n >= 0 {
                tokens.truncate(n as usize);
                return Ok(tokens);
            }
            // A negative count is the size it needs.
            tokens.resize(n.unsigned_abs() as usize, 0);
        }
        Err("llama.cpp could not tokenize the text".into())
    }

    /// The bytes a token stands for (control tokens print as nothing).
    pub fn piece(&self, token: Token) -> Vec<u8> {
        self.piece_of(token, false)
    }

    /// `special`: control tokens as their text (`<|im_end|>`).
    fn piece_of(&self, token: Token, special: bool) -> Vec<u8> {
        let mut buf = vec![0u8; 32];
        for _ in 0..2 {
            let capacity = i32::try_from(buf.len()).unwrap_or(i32::MAX);
            // SAFETY: `buf` is valid for `capacity` bytes.
            let n = unsafe {
                sys::llama_token_to_piece(
                    self.ptr,
                    token,
                    buf.as_mut_ptr().cast::<c_char>(),
                    capacity,
                    0,
                    special,
                )
            };
            if n >= 0 {
                buf.truncate(n as usize);
                return buf;
            }
            buf.resize(n.unsigned_abs() as usize, 0);
        }
        Vec::new()
    }

    /// The text of a special token as a template writes it (`<s>`), empty
    /// where the vocabulary has none.
    pub fn special_text(&self, which: Special) -> String {
        // SAFETY: a live vocabulary; the getters return an id or -1.
        let token = unsafe {
            match which {
                Special::Bos => sys::llama_vocab_bos(self.ptr),
                Special::Eos => sys::llama_vocab_eos(self.ptr),
            }
        };
        if token < 0 {
            return String::new();
        }
        String::from_utf8_lossy(&self.piece_of(token, true)).into_owned()
    }

    pub fn is_end_of_generation(&self, token: Token) -> bool {
        // SAFETY: a live vocabulary; any token id is accepted.
        unsafe { sys::llama_vocab_is_eog(self.ptr, token) }
    }
}

/// Special tokens a chat template may write out.
#[derive(Clone, Copy)]
pub enum Special {
    Bos,
    Eos,
}

/// Renders `(role, content)` messages with a chat template (a GGUF's own, or
/// a name llama.cpp knows such as `chatml`), ending with the assistant's turn.
pub fn apply_chat_template(template: &CStr, messages: &[(&str, &str)]) -> Result<String, String> {
    let owned = messages
        .iter()
        .map(|(role, content)| Ok((CString::new(*role)?, CString::new(*content)?)))
        .collect::<Result<Vec<_>, std::ffi::NulError>>()
        .map_err(|_| "a message contains a NUL byte".to_string())?;
    let chat: Vec<sys::llama_chat_message> = owned
        .iter()
        .map(|(role, content)| sys::llama_chat_message {
            role: role.as_ptr(),
            content: content.as_ptr(),
        })
        .collect();
    let total: usize = messages.iter().map(|(r, c)| r.len() + c.len()).sum();
    let mut buf = vec![0u8; total * 2 + 256];
    for _ in 0..2 {
        let capacity = i32::try_from(buf.len()).map_err(|_| "the chat is too long".to_string())?;
        // SAFETY: every pointer in `chat` points into `owned`, alive here;
        // `buf` is valid for `capacity` bytes.
        let n = unsafe {
            sys::llama_chat_apply_template(
                template.as_ptr(),
                chat.as_ptr(),
                chat.len(),
                true,
                buf.as_mut_ptr().cast::<c_char>(),
                capacity,
            )
        };
        if n < 0 {
            return Err("llama.cpp does not know this chat template".into());
        }
        let n = n as usize;
        if n <= buf.len() {
            buf.truncate(n);
            return String::from_utf8(buf)
                .map_err(|_| "the chat template produced invalid UTF-8".into());
        }
        buf.resize(n, 0);
    }
    Err("the chat template's output kept growing".into())
}

/// The settings of a context that onboard chooses.
pub struct ContextParams {
    pub n_ctx: u32,
    pub n_batch: u32,
    pub n_ubatch: u32,
    pub threads: i32,
    /// Recurrent-state snapshots kept per sequence, so a hybrid model can
    /// roll back the draft tokens its verification rejected (0: none).
    pub n_rs_seq: u32,
    /// An MTP draft context: it runs the model's MTP block, not the trunk.
    pub mtp: bool,
}

/// An inference context: the KV cache (or recurrent state) and buffers.
pub struct Context<'m> {
    ptr: NonNull<sys::llama_context>,
    _model: PhantomData<&'m ()>,
}

impl<'m> Context<'m> {
    /// `None` when llama.cpp could not allocate it; the reason went to the log.
    pub fn new(model: &'m Model<'_>, settings: &ContextParams) -> Option<Self> {
        // SAFETY: the defaults are plain data; the model is alive and outlives
        // the context ('m).
        let ptr = unsafe {
            let mut params = sys::llama_context_default_params();
            params.n_ctx = settings.n_ctx;
            params.n_batch = settings.n_batch;
            params.n_ubatch = settings.n_ubatch;
            params.n_threads = settings.threads;
            params.n_threads_batch = settings.threads;
            params.n_rs_seq = settings.n_rs_seq;
            if settings.mtp {
                params.ctx_type = sys::LLAMA_CONTEXT_TYPE_MTP;
            }
            // llama.cpp's own perf counters are the figures reported.
            params.no_perf = false;
            sys::llama_init_from_model(model.ptr.as_ptr(), params)
        };
        NonNull::new(ptr).map(|ptr| Context {
            ptr,
            _model: PhantomData,
        })
    }

    pub fn n_ctx(&self) -> u32 {
        // SAFETY: a live context.
        unsafe { sys::llama_n_ctx(self.ptr.as_ptr()) }
    }

    pub fn n_batch(&self) -> u32 {
        // SAFETY: a live context.
        unsafe { sys::llama_n_batch(self.ptr.as_ptr()) }
    }

    /// Forgets every token, so the next prompt starts at position 0.
    pub fn clear(&mut self) {
        // SAFETY: a live context; its memory handle lives as long as it.
        unsafe { sys::llama_memory_clear(sys::llama_get_memory(self.ptr.as_ptr()), true) };
    }

    pub fn reset_perf(&mut self) {
        // SAFETY: a live context.
        unsafe { sys::llama_perf_context_reset(self.ptr.as_ptr()) };
    }

    pub fn perf(&self) -> sys::llama_perf_context_data {
        // SAFETY: a live context; plain data is returned.
        unsafe { sys::llama_perf_context(self.ptr.as_ptr()) }
    }

    /// Decodes a batch with explicit positions (see [`Batch`]).
    pub fn decode_batch(&mut self, batch: &Batch) -> Result<(), String> {
        // SAFETY: a live context; the batch's arrays hold `n_tokens` entries.
        let code = unsafe { sys::llama_decode(self.ptr.as_ptr(), batch.raw) };
        decode_result(code)
    }

    /// Forgets the tokens at `from` and after (rejected draft tokens); false
    /// when the memory cannot cut there.
    pub fn forget_from(&mut self, from: u32) -> bool {
        let from = i32::try_from(from).unwrap_or(i32::MAX);
        // SAFETY: a live context; sequence 0 is the only one used.
        unsafe { sys::llama_memory_seq_rm(sys::llama_get_memory(self.ptr.as_ptr()), 0, from, -1) }
    }

    /// Appends `tokens` after the ones already decoded; logits come out for
    /// the last one only, which is what sampling reads.
    pub fn decode(&mut self, tokens: &mut [Token]) -> Result<(), String> {
        let n = i32::try_from(tokens.len()).map_err(|_| "too many tokens at once".to_string())?;
        // SAFETY: `tokens` is valid for `n` tokens for the call; llama.cpp
        // only reads them (the pointer is `*mut` in its signature).
        let code = unsafe {
            let batch = sys::llama_batch_get_one(tokens.as_mut_ptr(), n);
            sys::llama_decode(self.ptr.as_ptr(), batch)
        };
        decode_result(code)
    }
}

fn decode_result(code: i32) -> Result<(), String> {
    match code {
        0 => Ok(()),
        1 => Err("no room left in the context (KV cache full)".into()),
        2 => Err("decoding was aborted".into()),
        -1 => Err("llama.cpp rejected the batch as invalid".into()),
        other => Err(format!("llama_decode failed with code {other}")),
    }
}

/// Tokens of sequence 0 at explicit positions, each with or without logits:
/// what speculative decoding submits (the MTP drafter reads the positions).
pub struct Batch {
    raw: sys::llama_batch,
    capacity: usize,
}

impl Batch {
    pub fn new(capacity: usize) -> Self {
        let n = i32::try_from(capacity.max(1)).unwrap_or(i32::MAX);
        // SAFETY: allocates arrays for `n` tokens of one sequence each.
        let mut raw = unsafe { sys::llama_batch_init(n, 0, 1) };
        raw.n_tokens = 0;
        Batch {
            raw,
            capacity: n as usize,
        }
    }

    pub fn clear(&mut self) {
        self.raw.n_tokens = 0;
    }

    pub fn len(&self) -> usize {
        self.raw.n_tokens as usize
    }

    /// Adds `token` at `pos`; false when the batch is full.
    pub fn push(&mut self, token: Token, pos: u32, logits: bool) -> bool {
        let i = self.len();
        if i >= self.capacity {
            return false;
        }
        // SAFETY: `i` < capacity, so every array has room at `i`; seq_id[i]
        // points at room for one sequence id (n_seq_max = 1).
        unsafe {
            *self.raw.token.add(i) = token;
            *self.raw.pos.add(i) = i32::try_from(pos).unwrap_or(i32::MAX);
            *self.raw.n_seq_id.add(i) = 1;
            *(*self.raw.seq_id.add(i)) = 0;
            *self.raw.logits.add(i) = i8::from(logits);
        }
        self.raw.n_tokens += 1;
        true
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        // SAFETY: allocated by llama_batch_init, freed once.
        unsafe { sys::llama_batch_free(self.raw) };
    }
}

/// llama.cpp's MTP drafter (`common_speculative`, type `draft-mtp`): a
/// second context runs the model's MTP block on the target's hidden state
/// and proposes the next tokens, which the target then verifies in one
/// batch.
pub struct MtpDrafter {
    ptr: NonNull<sys::llama_rs_mtp_speculative>,
    n_max: usize,
}

impl MtpDrafter {
    /// `None` when llama.cpp refuses (the draft context has no MTP block).
    pub fn new(target: &Context<'_>, draft: &Context<'_>, n_max: u32) -> Option<Self> {
        let n_max = i32::try_from(n_max.clamp(1, 64)).unwrap_or(1);
        // SAFETY: both contexts are alive and outlive the drafter (it is
        // dropped before them in the worker); greedy drafting, no minimum,
        // no probability floor (llama-server's defaults for MTP).
        let ptr = unsafe {
            sys::llama_rs_mtp_speculative_init(
                target.ptr.as_ptr(),
                draft.ptr.as_ptr(),
                n_max,
                0,
                0.0,
            )
        };
        NonNull::new(ptr).map(|ptr| MtpDrafter {
            ptr,
            n_max: n_max as usize,
        })
    }

    /// A new prompt: the drafter forgets the last one.
    pub fn begin(&mut self, prompt: &[Token]) -> Result<(), String> {
        // SAFETY: `prompt` is valid for its length during the call.
        let code = unsafe {
            sys::llama_rs_mtp_speculative_begin(self.ptr.as_ptr(), prompt.as_ptr(), prompt.len())
        };
        status(code, "begin")
    }

    /// Shows the drafter a batch the target just decoded (prompt chunks and
    /// verification batches alike), so its own cache follows the target's.
    pub fn process(&mut self, batch: &Batch) -> Result<(), String> {
        // SAFETY: a live drafter; the batch's arrays hold `n_tokens` entries.
        let code = unsafe { sys::llama_rs_mtp_speculative_process(self.ptr.as_ptr(), &batch.raw) };
        status(code, "process")
    }

    /// Up to `n_max` tokens to follow `last`, which sits at `n_past`;
    /// `history` is every token before it.
    pub fn draft(
        &mut self,
        n_past: u32,
        last: Token,
        history: &[Token],
    ) -> Result<Vec<Token>, String> {
        let mut out: Vec<Token> = vec![0; self.n_max];
        let mut n = 0usize;
        let n_past = i32::try_from(n_past).map_err(|_| "position out of range".to_string())?;
        // SAFETY: `history` and `out` are valid for their lengths; llama.cpp
        // writes at most `out.len()` tokens and reports how many in `n`.
        let code = unsafe {
            sys::llama_rs_mtp_speculative_draft(
                self.ptr.as_ptr(),
                n_past,
                last,
                history.as_ptr(),
                history.len(),
                out.as_mut_ptr(),
                out.len(),
                &mut n,
            )
        };
        status(code, "draft")?;
        out.truncate(n);
        Ok(out)
    }

    /// How many of the last draft's tokens the target kept.
    pub fn accept(&mut self, accepted: usize) -> Result<(), String> {
        let accepted = u16::try_from(accepted).map_err(|_| "too many tokens".to_string())?;
        // SAFETY: a live drafter.
        let code = unsafe { sys::llama_rs_mtp_speculative_accept(self.ptr.as_ptr(), accepted) };
        status(code, "accept")
    }
}

impl Drop for MtpDrafter {
    fn drop(&mut self) {
        // SAFETY: owned, freed once, before the contexts it points at.
        unsafe { sys::llama_rs_mtp_speculative_free(self.ptr.as_ptr()) };
    }
}

fn status(code: sys::llama_rs_status, step: &str) -> Result<(), String> {
    match code {
        sys::LLAMA_RS_STATUS_OK => Ok(()),
        sys::LLAMA_RS_STATUS_INVALID_ARGUMENT => {
            Err(format!("the MTP drafter refused its arguments ({step})"))
        }
        sys::LLAMA_RS_STATUS_ALLOCATION_FAILED => {
            Err(format!("the MTP drafter ran out of room ({step})"))
        }
        _ => Err(format!("the MTP drafter failed ({step})")),
    }
}

impl Drop for Context<'_> {
    fn drop(&mut self) {
        // SAFETY: owned, freed once.
        unsafe { sys::llama_free(self.ptr.as_ptr()) };
    }
}

/// How the next token is picked from the last logits.
pub struct Sampler(NonNull<sys::llama_sampler>);

impl Sampler {
    pub fn greedy() -> Self {
        // SAFETY: allocation only; never null for the built-in samplers.
        Sampler::own(unsafe { sys::llama_sampler_init_greedy() })
    }

    /// Temperature, then a draw seeded with `seed` (reproducible runs).
    pub fn temperature(temperature: f32, seed: u32) -> Self {
        // SAFETY: the chain takes ownership of the samplers added to it and
        // frees them with itself.
        unsafe {
            let chain = sys::llama_sampler_chain_init(sys::llama_sampler_chain_default_params());
            sys::llama_sampler_chain_add(chain, sys::llama_sampler_init_temp(temperature));
            sys::llama_sampler_chain_add(chain, sys::llama_sampler_init_dist(seed));
            Sampler::own(chain)
        }
    }

    fn own(ptr: *mut sys::llama_sampler) -> Self {
        match NonNull::new(ptr) {
            Some(p) => Sampler(p),
            // llama.cpp returns null only when out of memory.
            None => std::alloc::handle_alloc_error(std::alloc::Layout::new::<usize>()),
        }
    }

    /// Picks (and accepts) the next token from the last decode's logits.
    pub fn sample(&mut self, ctx: &mut Context<'_>) -> Token {
        self.sample_at(ctx, -1)
    }

    /// Picks (and accepts) a token from the logits of the batch's `index`th
    /// token (-1: the last one).
    pub fn sample_at(&mut self, ctx: &mut Context<'_>, index: i32) -> Token {
        // SAFETY: both alive; llama.cpp checks the index against the outputs
        // of the last decode.
        unsafe { sys::llama_sampler_sample(self.0.as_ptr(), ctx.ptr.as_ptr(), index) }
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        // SAFETY: owned, freed once.
        unsafe { sys::llama_sampler_free(self.0.as_ptr()) };
    }
}
