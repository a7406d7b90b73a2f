//! A restricted pickle interpreter for `torch.save(state_dict)`'s `data.pkl`.
//!
//! It knows the opcodes of protocols 2–4 that such files contain (plus a few harmless
//! neighbours) and resolves `GLOBAL`s against a short allow-list at the moment the opcode is
//! read, so a forbidden callable is refused before any value could be built with it. `REDUCE`
//! never calls anything: on an allow-listed callable it builds the corresponding value.
//!
//! Every resource is bounded: stack, mark stack, memo, nesting depth of containers (so dropping
//! or printing a value can't overflow the native stack), copy-on-write work, and claimed string
//! lengths (checked against the remaining input before anything is allocated).

use super::{CheckpointError, DType, StorageRef, TensorRef, MAX_DIMS};
use std::collections::HashMap;
use std::rc::Rc;

/// Most values on the pickle stack (a state_dict pickle needs ~2,000: SETITEMS batches of 1,000).
pub(crate) const MAX_STACK: usize = 1 << 20;
/// Most open MARKs (a state_dict pickle needs 4).
pub(crate) const MAX_MARKS: usize = 1024;
/// Deepest container nesting accepted (a state_dict pickle needs 4).
pub(crate) const MAX_DEPTH: u32 = 100;
/// Most memo entries.
pub(crate) const MAX_MEMO: usize = 1 << 22;
/// Most containers (tuples, lists, dicts) in one pickle.
pub(crate) const MAX_CONTAINERS: usize = 1 << 22;

/// An allow-listed global.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Global {
    OrderedDict,
    RebuildTensorV2,
    RebuildParameter,
    RebuildParameterWithState,
    Storage(DType),
}

/// A pickle value. Containers live in the interpreter's arena and are referred to by index, so
/// they are shared (and mutated) exactly as Python shares them, cycles are harmless, and no
/// value is ever dropped, printed or walked recursively.
#[derive(Clone, Debug)]
#[allow(dead_code)] // scalar payloads are only shown by Debug: a state_dict ignores them
pub(crate) enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Rc<str>),
    Bytes(Rc<[u8]>),
    Obj(usize),
    Global(Global),
    Storage(Rc<StorageRef>),
    Tensor(Rc<TensorRef>),
}

#[derive(Debug)]
pub(crate) enum Node {
    Tuple(Vec<Value>),
    List(Vec<Value>),
    Dict(Vec<(Value, Value)>),
}

/// The unpickled object and the arena its containers live in.
#[derive(Debug)]
pub(crate) struct Unpickled {
    pub top: Value,
    pub arena: Vec<Node>,
}

impl Unpickled {
    fn kind(&self, v: &Value) -> &'static str {
        match v {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Bytes(_) => "bytes",
            Value::Obj(i) => match self.arena[*i] {
                Node::Tuple(_) => "tuple",
                Node::List(_) => "list",
                Node::Dict(_) => "dict",
            },
            Value::Global(_) => "global",
            Value::Storage(_) => "storage",
            Value::Tensor(_) => "tensor",
        }
    }

    fn dict(&self, v: &Value) -> Option<&[(Value, Value)]> {
        match v {
            Value::Obj(i) => match &self.arena[*i] {
                Node::Dict(d) => Some(d),
                _ => None,
            },
            _ => None,
        }
    }
}

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    /// Offset of the opcode being executed (for errors).
    op_at: usize,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u32, Value>,
    arena: Vec<Node>,
    /// Nesting depth of each arena container as known when items were added (an upper bound
    /// only for straightforward nesting; safety does not depend on it, see [`Value`]).
    depth: Vec<u32>,
}

/// Run the pickle and return the object `STOP` leaves on top.
pub(crate) fn run(data: &[u8]) -> Result<Unpickled, CheckpointError> {
    let mut m = Machine {
        data,
        pos: 0,
        op_at: 0,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        arena: Vec::new(),
        depth: Vec::new(),
    };
    let top = m.run()?;
    Ok(Unpickled { top, arena: m.arena })
}

impl<'a> Machine<'a> {
    fn err(&self, reason: impl Into<String>) -> CheckpointError {
        CheckpointError::Pickle { offset: self.op_at, reason: reason.into() }
    }

    fn kind(&self, v: &Value) -> &'static str {
        match v {
            Value::Obj(i) => match self.arena[*i] {
                Node::Tuple(_) => "tuple",
                Node::List(_) => "list",
                Node::Dict(_) => "dict",
            },
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Bytes(_) => "bytes",
            Value::Global(_) => "global",
            Value::Storage(_) => "storage",
            Value::Tensor(_) => "tensor",
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], CheckpointError> {
        let left = self.data.len() - self.pos;
        if n > left {
            return Err(self.err(format!(
                "unexpected end of data: the opcode needs {n} more bytes, {left} are left (truncated pickle?)"
            )));
        }
        let s = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, CheckpointError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, CheckpointError> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().expect("2")))
    }
    fn u32(&mut self) -> Result<u32, CheckpointError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4")))
    }
    fn u64(&mut self) -> Result<u64, CheckpointError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8")))
    }

    /// Bytes of a claimed length, checked against the remaining input before use.
    fn counted(&mut self, len: u64) -> Result<&'a [u8], CheckpointError> {
        let left = (self.data.len() - self.pos) as u64;
        if len > left {
            return Err(self.err(format!("claimed length {len} exceeds the {left} bytes left in the pickle")));
        }
        self.take(len as usize)
    }

    fn string(&mut self, len: u64) -> Result<Value, CheckpointError> {
        let bytes = self.counted(len)?;
        let s = std::str::from_utf8(bytes).map_err(|e| self.err(format!("string is not UTF-8: {e}")))?;
        Ok(Value::Str(Rc::from(s)))
    }

    fn line(&mut self) -> Result<&'a str, CheckpointError> {
        let rest = &self.data[self.pos..];
        let Some(n) = rest.iter().position(|&b| b == b'\n') else {
            return Err(self.err("unterminated GLOBAL name (no newline before the end of data)"));
        };
        let s = std::str::from_utf8(&rest[..n]).map_err(|_| self.err("GLOBAL name is not UTF-8"))?;
        self.pos += n + 1;
        Ok(s)
    }

    fn floor(&self) -> usize {
        self.marks.last().copied().unwrap_or(0)
    }

    fn push(&mut self, v: Value) -> Result<(), CheckpointError> {
        if self.stack.len() >= MAX_STACK {
            return Err(self.err(format!("pickle stack exceeds {MAX_STACK} values")));
        }
        self.stack.push(v);
        Ok(())
    }

    fn pop(&mut self) -> Result<Value, CheckpointError> {
        if self.stack.len() <= self.floor() {
            return Err(self.err("stack underflow"));
        }
        Ok(self.stack.pop().expect("checked"))
    }

    fn top(&self) -> Result<&Value, CheckpointError> {
        if self.stack.len() <= self.floor() {
            return Err(self.err("stack underflow"));
        }
        Ok(self.stack.last().expect("checked"))
    }

    fn pop_mark(&mut self) -> Result<Vec<Value>, CheckpointError> {
        let Some(mark) = self.marks.pop() else {
            return Err(self.err("no MARK on the stack"));
        };
        Ok(self.stack.split_off(mark))
    }

    fn value_depth(&self, v: &Value) -> u32 {
        match v {
            Value::Obj(i) => self.depth[*i],
            _ => 0,
        }
    }

    fn items_depth(&self, items: &[Value]) -> Result<u32, CheckpointError> {
        let d = 1 + items.iter().map(|v| self.value_depth(v)).max().unwrap_or(0);
        if d > MAX_DEPTH {
            return Err(self.err(format!("containers nested more than {MAX_DEPTH} deep")));
        }
        Ok(d)
    }

    fn new_node(&mut self, node: Node, depth: u32) -> Result<Value, CheckpointError> {
        if self.arena.len() >= MAX_CONTAINERS {
            return Err(self.err(format!("more than {MAX_CONTAINERS} containers")));
        }
        self.arena.push(node);
        self.depth.push(depth);
        Ok(Value::Obj(self.arena.len() - 1))
    }

    fn tuple(&mut self, items: Vec<Value>) -> Result<Value, CheckpointError> {
        let d = self.items_depth(&items)?;
        self.new_node(Node::Tuple(items), d)
    }

    /// Append items to the list on top of the stack.
    fn extend_list(&mut self, items: Vec<Value>) -> Result<(), CheckpointError> {
        let d = self.items_depth(&items)?;
        let top = self.top()?;
        let i = match top {
            Value::Obj(i) if matches!(self.arena[*i], Node::List(_)) => *i,
            other => return Err(self.err(format!("APPEND(S) on a {}, not a list", self.kind(other)))),
        };
        self.depth[i] = self.depth[i].max(d);
        let Node::List(l) = &mut self.arena[i] else { unreachable!() };
        l.extend(items);
        Ok(())
    }

    /// Set key/value pairs (flat: k, v, k, v …) in the dict on top of the stack.
    fn set_items(&mut self, items: Vec<Value>) -> Result<(), CheckpointError> {
        if items.len() & 1 != 0 {
            return Err(self.err("SETITEMS with an odd number of values"));
        }
        let d = self.items_depth(&items)?;
        let top = self.top()?;
        let i = match top {
            Value::Obj(i) if matches!(self.arena[*i], Node::Dict(_)) => *i,
            other => return Err(self.err(format!("SETITEM(S) on a {}, not a dict", self.kind(other)))),
        };
        self.depth[i] = self.depth[i].max(d);
        let Node::Dict(dict) = &mut self.arena[i] else { unreachable!() };
        let mut it = items.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            dict.push((k, v));
        }
        Ok(())
    }

    fn memo_put(&mut self, idx: u32) -> Result<(), CheckpointError> {
        if self.memo.len() >= MAX_MEMO && !self.memo.contains_key(&idx) {
            return Err(self.err(format!("memo exceeds {MAX_MEMO} entries")));
        }
        let v = self.top().map_err(|_| self.err("memoize with an empty stack"))?.clone();
        self.memo.insert(idx, v);
        Ok(())
    }

    fn memo_get(&mut self, idx: u32) -> Result<(), CheckpointError> {
        let Some(v) = self.memo.get(&idx).cloned() else {
            return Err(self.err(format!("memo key {idx} was never stored")));
        };
        self.push(v)
    }

    fn run(&mut self) -> Result<Value, CheckpointError> {
        loop {
            self.op_at = self.pos;
            if self.pos >= self.data.len() {
                return Err(self.err("unexpected end of data before STOP (truncated pickle?)"));
            }
            let op = self.u8()?;
            match op {
                0x80 => {
                    // PROTO
                    let p = self.u8()?;
                    if p > 5 {
                        return Err(self.err(format!("unsupported pickle protocol {p}")));
                    }
                }
                0x95 => {
                    // FRAME: a length hint, the data simply follows
                    self.u64()?;
                }
                b'.' => {
                    // STOP
                    return self.pop().map_err(|_| self.err("STOP with an empty stack"));
                }
                b'}' => {
                    let v = self.new_node(Node::Dict(Vec::new()), 1)?;
                    self.push(v)?;
                }
                b']' => {
                    let v = self.new_node(Node::List(Vec::new()), 1)?;
                    self.push(v)?;
                }
                b')' => {
                    let v = self.new_node(Node::Tuple(Vec::new()), 1)?;
                    self.push(v)?;
                }
                b'(' => {
                    if self.marks.len() >= MAX_MARKS {
                        return Err(self.err(format!("more than {MAX_MARKS} nested MARKs")));
                    }
                    self.marks.push(self.stack.len());
                }
                b'X' => {
                    let n = self.u32()? as u64;
                    let v = self.string(n)?;
                    self.push(v)?;
                }
                0x8c => {
                    let n = self.u8()? as u64;
                    let v = self.string(n)?;
                    self.push(v)?;
                }
                0x8d => {
                    let n = self.u64()?;
                    let v = self.string(n)?;
                    self.push(v)?;
                }
                b'B' | b'C' | 0x8e => {
                    // BINBYTES, SHORT_BINBYTES, BINBYTES8
                    let n = match op {
                        b'B' => self.u32()? as u64,
                        b'C' => self.u8()? as u64,
                        _ => self.u64()?,
                    };
                    let b = self.counted(n)?;
                    self.push(Value::Bytes(Rc::from(b)))?;
                }
                b'J' => {
                    let v = self.u32()? as i32;
                    self.push(Value::Int(v as i64))?;
                }
                b'K' => {
                    let v = self.u8()?;
                    self.push(Value::Int(v as i64))?;
                }
                b'M' => {
                    let v = self.u16()?;
                    self.push(Value::Int(v as i64))?;
                }
                0x8a => {
                    // LONG1: n-byte little-endian two's complement
                    let n = self.u8()? as usize;
                    let b = self.take(n)?;
                    if n > 8 {
                        return Err(self.err(format!("integer of {n} bytes is too large")));
                    }
                    let mut v: i64 = 0;
                    for (i, &byte) in b.iter().enumerate() {
                        v |= (byte as i64) << (8 * i);
                    }
                    if n > 0 && n < 8 && b[n - 1] & 0x80 != 0 {
                        v -= 1i64 << (8 * n);
                    }
                    self.push(Value::Int(v))?;
                }
                b'G' => {
                    let v = f64::from_be_bytes(self.take(8)?.try_into().expect("8"));
                    self.push(Value::Float(v))?;
                }
                0x88 => self.push(Value::Bool(true))?,
                0x89 => self.push(Value::Bool(false))?,
                b'N' => self.push(Value::None)?,
                b't' => {
                    let items = self.pop_mark()?;
                    let t = self.tuple(items)?;
                    self.push(t)?;
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(self.pop()?);
                    }
                    items.reverse();
                    let t = self.tuple(items)?;
                    self.push(t)?;
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    let g = resolve_global(module, name)?;
                    self.push(Value::Global(g))?;
                }
                0x93 => {
                    // STACK_GLOBAL
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let (Value::Str(module), Value::Str(name)) = (&module, &name) else {
                        return Err(self.err("STACK_GLOBAL needs two strings"));
                    };
                    let g = resolve_global(module, name)?;
                    self.push(Value::Global(g))?;
                }
                b'R' => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let v = self.reduce(callable, args)?;
                    self.push(v)?;
                }
                b'b' => {
                    // BUILD: only OrderedDict's instance state (`_metadata`), which is dropped.
                    let _state = self.pop()?;
                    let top = self.top()?;
                    if !matches!(top, Value::Obj(i) if matches!(self.arena[*i], Node::Dict(_))) {
                        return Err(self.err(format!("BUILD on a {} is not supported", self.kind(top))));
                    }
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    self.set_items(vec![k, v])?;
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    self.set_items(items)?;
                }
                b'a' => {
                    let v = self.pop()?;
                    self.extend_list(vec![v])?;
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    self.extend_list(items)?;
                }
                b'q' => {
                    let i = self.u8()? as u32;
                    self.memo_put(i)?;
                }
                b'r' => {
                    let i = self.u32()?;
                    self.memo_put(i)?;
                }
                0x94 => {
                    let i = u32::try_from(self.memo.len()).map_err(|_| self.err("memo full"))?;
                    self.memo_put(i)?;
                }
                b'h' => {
                    let i = self.u8()? as u32;
                    self.memo_get(i)?;
                }
                b'j' => {
                    let i = self.u32()?;
                    self.memo_get(i)?;
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let s = self.persistent_load(pid)?;
                    self.push(Value::Storage(Rc::new(s)))?;
                }
                b'0' => {
                    self.pop()?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let v = self.top()?.clone();
                    self.push(v)?;
                }
                other => {
                    return Err(self.err(format!(
                        "unsupported opcode 0x{other:02x}{} (not used by torch.save of a state_dict)",
                        opcode_name(other).map(|n| format!(" ({n})")).unwrap_or_default()
                    )))
                }
            }
        }
    }

    fn tuple_items(&self, v: &Value) -> Option<&[Value]> {
        match v {
            Value::Obj(i) => match &self.arena[*i] {
                Node::Tuple(t) => Some(t),
                _ => None,
            },
            _ => None,
        }
    }

    /// `('storage', torch.<T>Storage, key, location, numel)` → a storage reference.
    fn persistent_load(&self, pid: Value) -> Result<StorageRef, CheckpointError> {
        let Some(items) = self.tuple_items(&pid) else {
            return Err(self.err(format!("persistent id is a {}, not a tuple", self.kind(&pid))));
        };
        match items {
            [Value::Str(tag), Value::Global(Global::Storage(dtype)), Value::Str(key), _location, Value::Int(numel)]
                if &**tag == "storage" =>
            {
                let numel = u64::try_from(*numel).map_err(|_| self.err("negative storage size"))?;
                Ok(StorageRef { key: key.to_string(), dtype: *dtype, numel })
            }
            _ => Err(self.err("persistent id is not ('storage', torch.<Type>Storage, key, location, numel)")),
        }
    }

    fn reduce(&mut self, callable: Value, args: Value) -> Result<Value, CheckpointError> {
        let Value::Global(g) = callable else {
            return Err(self.err(format!("REDUCE on a {}, not an allow-listed callable", self.kind(&callable))));
        };
        let Some(a) = self.tuple_items(&args) else {
            return Err(self.err(format!("REDUCE arguments are a {}, not a tuple", self.kind(&args))));
        };
        match g {
            Global::OrderedDict => {
                if !a.is_empty() {
                    return Err(self.err("OrderedDict(...) with arguments is not supported"));
                }
                self.new_node(Node::Dict(Vec::new()), 1)
            }
            Global::RebuildTensorV2 => {
                if a.len() != 6 && a.len() != 7 {
                    return Err(self.err(format!("_rebuild_tensor_v2 takes 6 or 7 arguments, got {}", a.len())));
                }
                let Value::Storage(storage) = &a[0] else {
                    return Err(self.err(format!("_rebuild_tensor_v2: storage is a {}", self.kind(&a[0]))));
                };
                let offset = self.index(&a[1], "storage offset")?;
                let shape = self.index_tuple(&a[2], "size")?;
                let stride = self.index_tuple(&a[3], "stride")?;
                if shape.len() != stride.len() {
                    return Err(self.err(format!(
                        "_rebuild_tensor_v2: size has {} dims but stride has {}",
                        shape.len(),
                        stride.len()
                    )));
                }
                Ok(Value::Tensor(Rc::new(TensorRef { storage: (**storage).clone(), offset, shape, stride })))
            }
            Global::RebuildParameter | Global::RebuildParameterWithState => {
                let n = if g == Global::RebuildParameter { 3 } else { 4 };
                if a.len() != n {
                    return Err(self.err(format!("_rebuild_parameter takes {n} arguments, got {}", a.len())));
                }
                match &a[0] {
                    t @ Value::Tensor(_) => Ok(t.clone()),
                    other => Err(self.err(format!("_rebuild_parameter of a {}, not a tensor", self.kind(other)))),
                }
            }
            Global::Storage(d) => Err(self.err(format!("a {d} storage class cannot be called"))),
        }
    }

    fn index(&self, v: &Value, what: &str) -> Result<usize, CheckpointError> {
        match v {
            Value::Int(i) => usize::try_from(*i).map_err(|_| self.err(format!("negative tensor {what} {i}"))),
            other => Err(self.err(format!("tensor {what} is a {}, not an int", self.kind(other)))),
        }
    }

    fn index_tuple(&self, v: &Value, what: &str) -> Result<Vec<usize>, CheckpointError> {
        match self.tuple_items(v) {
            Some(items) => items.iter().map(|x| self.index(x, what)).collect(),
            None => Err(self.err(format!("tensor {what} is a {}, not a tuple", self.kind(v)))),
        }
    }
}

fn resolve_global(module: &str, name: &str) -> Result<Global, CheckpointError> {
    let g = match (module, name) {
        ("collections", "OrderedDict") => Global::OrderedDict,
        ("torch._utils", "_rebuild_tensor_v2") => Global::RebuildTensorV2,
        ("torch._utils", "_rebuild_parameter") => Global::RebuildParameter,
        ("torch._utils", "_rebuild_parameter_with_state") => Global::RebuildParameterWithState,
        ("torch", "FloatStorage") => Global::Storage(DType::F32),
        ("torch", "HalfStorage") => Global::Storage(DType::F16),
        ("torch", "BFloat16Storage") => Global::Storage(DType::BF16),
        ("torch", "DoubleStorage") => Global::Storage(DType::F64),
        ("torch", "LongStorage") => Global::Storage(DType::I64),
        ("torch", "IntStorage") => Global::Storage(DType::I32),
        ("torch", "ShortStorage") => Global::Storage(DType::I16),
        ("torch", "CharStorage") => Global::Storage(DType::I8),
        ("torch", "ByteStorage") => Global::Storage(DType::U8),
        ("torch", "BoolStorage") => Global::Storage(DType::Bool),
        _ => return Err(CheckpointError::ForbiddenGlobal { module: module.to_string(), name: name.to_string() }),
    };
    Ok(g)
}

fn opcode_name(op: u8) -> Option<&'static str> {
    Some(match op {
        b'I' => "INT",
        b'L' => "LONG",
        b'F' => "FLOAT",
        b'S' => "STRING",
        b'T' => "BINSTRING",
        b'U' => "SHORT_BINSTRING",
        b'V' => "UNICODE",
        b'P' => "PERSID",
        b'p' => "PUT",
        b'g' => "GET",
        b'd' => "DICT",
        b'l' => "LIST",
        b'i' => "INST",
        b'o' => "OBJ",
        0x81 => "NEWOBJ",
        0x82 => "EXT1",
        0x83 => "EXT2",
        0x84 => "EXT4",
        0x8b => "LONG4",
        0x8f => "EMPTY_SET",
        0x90 => "ADDITEMS",
        0x91 => "FROZENSET",
        0x92 => "NEWOBJ_EX",
        0x96 => "BYTEARRAY8",
        0x97 => "NEXT_BUFFER",
        0x98 => "READONLY_BUFFER",
        _ => return None,
    })
}

/// Find the state_dict in the unpickled object and list its tensors in file order.
pub(crate) fn state_dict(u: &Unpickled) -> Result<Vec<(String, TensorRef)>, CheckpointError> {
    let Some(d) = u.dict(&u.top) else {
        return Err(CheckpointError::NotAStateDict {
            reason: format!("the pickled object is a {}, not a dict of tensors", u.kind(&u.top)),
        });
    };
    let has_tensor = |d: &[(Value, Value)]| d.iter().any(|(_, v)| matches!(v, Value::Tensor(_)));
    let mut chosen = d;
    if !has_tensor(d) {
        let nested = ["state_dict", "model"].iter().find_map(|want| {
            d.iter().find_map(|(k, v)| match (k, u.dict(v)) {
                (Value::Str(k), Some(inner)) if &**k == *want && has_tensor(inner) => Some(inner),
                _ => None,
            })
        });
        match nested {
            Some(inner) => chosen = inner,
            None => {
                let keys: Vec<String> = d
                    .iter()
                    .take(8)
                    .map(|(k, _)| match k {
                        Value::Str(s) => format!("{s:?}"),
                        other => u.kind(other).to_string(),
                    })
                    .collect();
                return Err(CheckpointError::NotAStateDict {
                    reason: format!(
                        "a dict of {} entries, none a tensor, and no `state_dict`/`model` dict of tensors (keys: {})",
                        d.len(),
                        keys.join(", ")
                    ),
                });
            }
        }
    }
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for (k, v) in chosen {
        let Value::Tensor(t) = v else { continue };
        let Value::Str(key) = k else {
            return Err(CheckpointError::NotAStateDict {
                reason: format!("a tensor is stored under a {} key, not a string", u.kind(k)),
            });
        };
        if !seen.insert(key.clone()) {
            return Err(CheckpointError::DuplicateKey { key: key.to_string() });
        }
        if t.shape.len() > MAX_DIMS {
            return Err(CheckpointError::TooManyDims { key: key.to_string(), dims: t.shape.len(), limit: MAX_DIMS });
        }
        out.push((key.to_string(), (**t).clone()));
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A tiny protocol-2 pickle writer for tests (mirrors what torch's pickler emits).
    #[derive(Default)]
    pub(crate) struct P(pub Vec<u8>);

    impl P {
        pub fn new() -> Self {
            P(vec![0x80, 2])
        }
        pub fn op(&mut self, b: u8) -> &mut Self {
            self.0.push(b);
            self
        }
        pub fn s(&mut self, s: &str) -> &mut Self {
            self.0.push(b'X');
            self.0.extend_from_slice(&(s.len() as u32).to_le_bytes());
            self.0.extend_from_slice(s.as_bytes());
            self
        }
        pub fn int(&mut self, v: i64) -> &mut Self {
            if (0..256).contains(&v) {
                self.0.extend_from_slice(&[b'K', v as u8]);
            } else if (0..65536).contains(&v) {
                self.0.push(b'M');
                self.0.extend_from_slice(&(v as u16).to_le_bytes());
            } else if i32::try_from(v).is_ok() {
                self.0.push(b'J');
                self.0.extend_from_slice(&(v as i32).to_le_bytes());
            } else {
                self.0.extend_from_slice(&[0x8a, 8]);
                self.0.extend_from_slice(&v.to_le_bytes());
            }
            self
        }
        pub fn global(&mut self, module: &str, name: &str) -> &mut Self {
            self.0.push(b'c');
            self.0.extend_from_slice(format!("{module}\n{name}\n").as_bytes());
            self
        }
        pub fn ints(&mut self, v: &[usize]) -> &mut Self {
            self.op(b'(');
            for &x in v {
                self.int(x as i64);
            }
            self.op(b't')
        }
        /// `_rebuild_tensor_v2(('storage', torch.<storage_type>, key, 'cpu', numel), offset, size, stride, False, OrderedDict())`
        pub fn tensor(
            &mut self,
            storage_type: &str,
            key: &str,
            numel: usize,
            offset: usize,
            size: &[usize],
            stride: &[usize],
        ) -> &mut Self {
            self.global("torch._utils", "_rebuild_tensor_v2").op(b'(');
            self.op(b'(')
                .s("storage")
                .global("torch", storage_type)
                .s(key)
                .s("cpu")
                .int(numel as i64)
                .op(b't')
                .op(b'Q');
            self.int(offset as i64).ints(size).ints(stride).op(0x89);
            self.global("collections", "OrderedDict").op(b')').op(b'R');
            self.op(b't').op(b'R')
        }
        pub fn stop(&mut self) -> Vec<u8> {
            self.op(b'.');
            std::mem::take(&mut self.0)
        }
    }

    fn one_tensor_dict() -> Vec<u8> {
        let mut p = P::new();
        p.op(b'}').op(b'q').op(0).op(b'(');
        p.s("w").tensor("FloatStorage", "0", 6, 0, &[2, 3], &[3, 1]);
        p.s("step").int(7);
        p.s("b").tensor("HalfStorage", "1", 4, 1, &[3], &[1]);
        p.op(b'u');
        p.stop()
    }

    #[test]
    fn parses_a_state_dict() {
        let sd = state_dict(&run(&one_tensor_dict()).unwrap()).unwrap();
        assert_eq!(sd.len(), 2, "the int entry is ignored");
        assert_eq!(sd[0].0, "w");
        assert_eq!(sd[0].1.shape, vec![2, 3]);
        assert_eq!(sd[0].1.stride, vec![3, 1]);
        assert_eq!(sd[0].1.storage, StorageRef { key: "0".into(), dtype: DType::F32, numel: 6 });
        assert_eq!(sd[1].0, "b");
        assert_eq!(sd[1].1.offset, 1);
        assert_eq!(sd[1].1.storage.dtype, DType::F16);
    }

    #[test]
    fn nested_state_dict_and_metadata_build() {
        // {'epoch': 3, 'state_dict': OrderedDict(w=tensor) with BUILD of _metadata, 'lr': 0.1}
        let mut p = P::new();
        p.op(b'}').op(b'(');
        p.s("epoch").int(3);
        p.s("state_dict").global("collections", "OrderedDict").op(b')').op(b'R');
        p.op(b'(').s("m.w").tensor("FloatStorage", "0", 1, 0, &[], &[]).op(b'u');
        p.op(b'}').s("_metadata").op(b'}').s("").op(b'}').s("version").int(1).op(b's').op(b's').op(b's').op(b'b');
        p.s("lr").op(b'G').0.extend_from_slice(&0.1f64.to_be_bytes());
        p.s("name").op(0x8c).op(3).0.extend_from_slice(b"abc");
        p.s("neg").op(0x8a).op(2).0.extend_from_slice(&(-300i16).to_le_bytes());
        p.op(b'u');
        let sd = state_dict(&run(&p.stop()).unwrap()).unwrap();
        assert_eq!(sd.len(), 1);
        assert_eq!(sd[0].0, "m.w");
        assert!(sd[0].1.shape.is_empty());
    }

    #[test]
    fn long1_negative() {
        let mut p = P::new();
        p.op(0x8a).op(2).0.extend_from_slice(&(-300i16).to_le_bytes());
        match run(&p.stop()).unwrap().top {
            Value::Int(v) => assert_eq!(v, -300),
            v => panic!("{v:?}"),
        }
    }

    #[test]
    fn forbidden_globals_are_named() {
        for (module, name) in [("os", "system"), ("builtins", "eval"), ("subprocess", "Popen"), ("posix", "system")] {
            let mut p = P::new();
            p.global(module, name).s("echo pwned").op(0x85).op(b'R');
            let e = run(&p.stop()).unwrap_err();
            match &e {
                CheckpointError::ForbiddenGlobal { module: m, name: n } => {
                    assert_eq!((m.as_str(), n.as_str()), (module, name));
                }
                other => panic!("{other:?}"),
            }
            assert!(e.to_string().contains(&format!("{module}.{name}")), "{e}");
            // The same through STACK_GLOBAL (protocol 4).
            let mut p = P::new();
            p.s(module).s(name).op(0x93);
            let e = run(&p.stop()).unwrap_err();
            assert!(matches!(e, CheckpointError::ForbiddenGlobal { .. }), "{e}");
        }
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        // 100k MARK + EMPTY_LIST, closed with 100k APPENDS.
        let mut p = P::new();
        for _ in 0..100_000 {
            p.op(b'(').op(b']');
        }
        for _ in 0..100_000 {
            p.op(b'e');
        }
        let e = run(&p.stop()).unwrap_err();
        assert!(e.to_string().contains("MARK"), "{e}");
        // Without marks: EMPTY_LIST then 100k × (EMPTY_LIST, SWAP-free nesting via TUPLE1).
        let mut p = P::new();
        p.op(b']');
        for _ in 0..100_000 {
            p.op(0x85);
        }
        let e = run(&p.stop()).unwrap_err();
        assert!(e.to_string().contains("nested more than"), "{e}");
        // Lists nested by APPEND: [] [] a → [[]] …
        let mut p = P::new();
        p.op(b']');
        for _ in 0..100_000 {
            p.op(b']').op(b'2').op(b'0'); // push, DUP, POP: stack grows by one list
        }
        let e = run(&p.stop());
        assert!(e.is_ok(), "flat stack of lists is fine");
        let mut p = P::new();
        for _ in 0..200_000 {
            p.op(b']');
        }
        for _ in 0..199_999 {
            p.op(b'a');
        }
        let e = run(&p.stop()).unwrap_err();
        assert!(e.to_string().contains("nested more than"), "{e}");
    }

    #[test]
    fn huge_claimed_lengths() {
        let mut p = P::new();
        p.op(b'X').0.extend_from_slice(&u32::MAX.to_le_bytes());
        p.0.extend_from_slice(b"short");
        let e = run(&p.stop()).unwrap_err();
        assert!(e.to_string().contains("claimed length 4294967295 exceeds"), "{e}");
        let mut p = P::new();
        p.op(0x8d).0.extend_from_slice(&u64::MAX.to_le_bytes());
        let e = run(&p.stop()).unwrap_err();
        assert!(e.to_string().contains("claimed length"), "{e}");
        let mut p = P::new();
        p.op(0x8e).0.extend_from_slice(&(1u64 << 40).to_le_bytes());
        let e = run(&p.stop()).unwrap_err();
        assert!(e.to_string().contains("claimed length"), "{e}");
    }

    #[test]
    fn malformed_pickles() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (vec![], "unexpected end of data before STOP"),
            (vec![0x80, 2], "unexpected end of data before STOP"),
            (vec![0x80, 2, b'.'], "STOP with an empty stack"),
            (vec![0x80, 9, b'N', b'.'], "unsupported pickle protocol 9"),
            (vec![0x80, 2, b'h', 5, b'.'], "memo key 5 was never stored"),
            (vec![0x80, 2, b'u', b'.'], "no MARK"),
            (vec![0x80, 2, b'N', b'(', b'0', b'.'], "stack underflow"),
            (vec![0x80, 2, b'N', b'N', b'R', b'.'], "REDUCE on a None"),
            (vec![0x80, 2, b'N', b'N', b's', b'.'], "stack underflow"),
            (vec![0x80, 2, b'N', b'N', b'N', b's', b'.'], "SETITEM(S) on a None"),
            (vec![0x80, 2, 0x81, b'.'], "NEWOBJ"),
            (vec![0x80, 2, b'c', b'o', b's'], "unterminated GLOBAL"),
            (vec![0x80, 2, b'J', 1, 2], "unexpected end of data"),
            (vec![0x80, 2, b'N', b'Q', b'.'], "persistent id is a None"),
            (vec![0x80, 2, b'X', 2, 0, 0, 0, 0xff, 0xfe, b'.'], "not UTF-8"),
            (vec![0x80, 2, 0x8a, 9, 1, 2, 3, 4, 5, 6, 7, 8, 9, b'.'], "too large"),
        ];
        for (bytes, want) in cases {
            let e = run(&bytes).unwrap_err();
            assert!(matches!(e, CheckpointError::Pickle { .. }), "{bytes:?}: {e}");
            assert!(e.to_string().contains(want), "{bytes:?}: {e} (wanted {want:?})");
        }
        // Error offsets point at the failing opcode.
        match run(&[0x80, 2, b'N', b'N', b'R', b'.']).unwrap_err() {
            CheckpointError::Pickle { offset, .. } => assert_eq!(offset, 4),
            e => panic!("{e:?}"),
        }
    }

    #[test]
    fn bad_tensor_arguments() {
        let mut p = P::new();
        p.op(b'}').op(b'(').s("w").tensor("FloatStorage", "0", 6, 0, &[2, 3], &[3]).op(b'u');
        let e = run(&p.stop()).unwrap_err();
        assert!(e.to_string().contains("size has 2 dims but stride has 1"), "{e}");
        // negative size
        let mut p = P::new();
        p.global("torch._utils", "_rebuild_tensor_v2").op(b'(');
        p.op(b'(').s("storage").global("torch", "FloatStorage").s("0").s("cpu").int(1).op(b't').op(b'Q');
        p.int(0).op(b'(').int(-1).op(b't').ints(&[1]).op(0x89).op(b'N').op(b't').op(b'R');
        let e = run(&p.stop()).unwrap_err();
        assert!(e.to_string().contains("negative tensor size -1"), "{e}");
    }

    #[test]
    fn not_a_state_dict() {
        let e = state_dict(&run(&[0x80, 2, b']', b'.']).unwrap()).unwrap_err();
        assert!(matches!(e, CheckpointError::NotAStateDict { .. }), "{e}");
        let mut p = P::new();
        p.op(b'}').s("epoch").int(1).op(b's');
        let e = state_dict(&run(&p.stop()).unwrap()).unwrap_err();
        assert!(e.to_string().contains("\"epoch\""), "{e}");
        // Duplicate key
        let mut p = P::new();
        p.op(b'}').op(b'(');
        p.s("w").tensor("FloatStorage", "0", 1, 0, &[1], &[1]);
        p.s("w").tensor("FloatStorage", "1", 1, 0, &[1], &[1]);
        p.op(b'u');
        let e = state_dict(&run(&p.stop()).unwrap()).unwrap_err();
        assert!(matches!(e, CheckpointError::DuplicateKey { ref key } if key == "w"), "{e}");
    }

    #[test]
    fn memo_shares_like_python() {
        // d = {}; memo[0] = d; d['a'] = 1; (d, memo[0]) → both are the same dict with one item.
        let mut p = P::new();
        p.op(b'}').op(b'q').op(0).s("a").int(1).op(b's').op(b'h').op(0).op(0x86);
        let u = run(&p.stop()).unwrap();
        let Value::Obj(t) = u.top else { panic!() };
        let Node::Tuple(items) = &u.arena[t] else { panic!() };
        assert_eq!(u.dict(&items[0]).unwrap().len(), 1);
        assert_eq!(u.dict(&items[1]).unwrap().len(), 1);
        // A list appended to itself (a cycle) is harmless: nothing walks it recursively.
        let mut p = P::new();
        p.op(b']').op(b'q').op(1).op(b'h').op(1).op(b'a');
        let u = run(&p.stop()).unwrap();
        assert_eq!(u.kind(&u.top), "list");
    }

    #[test]
    fn same_dict_referenced_twice() {
        // {'model': sd, 'state_dict': sd} where the second is a BINGET of the filled dict.
        let mut p = P::new();
        p.op(b'}').op(b'(');
        p.s("model").op(b'}').op(b'q').op(9).op(b'(').s("w").tensor("FloatStorage", "0", 1, 0, &[1], &[1]).op(b'u');
        p.s("state_dict").op(b'h').op(9);
        p.op(b'u');
        let sd = state_dict(&run(&p.stop()).unwrap()).unwrap();
        assert_eq!(sd.len(), 1);
    }
}
