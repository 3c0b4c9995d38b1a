"""Parser for the printed IR text (see printer.py). Errors carry line:column."""
from __future__ import annotations

import re

import numpy as np

from ..errors import IRParseError, SymfuseError
from .core import Function, Region, Value, apply, get_opdef, location
from .symdim import parse_dim
from .types import DTYPES, tensor_type

_TOKEN = re.compile(r"""
  (?P<ws>[ \t\r]+) | (?P<nl>\n) | (?P<comment>//[^\n]*)
| (?P<value>%[A-Za-z0-9_.]+(?:\#\d+)?)
| (?P<sym>@[A-Za-z_][A-Za-z0-9_.]*)
| (?P<type>(?:f16|f32|f64|i8|i16|i32|i64|u8|u32|u64|i1)\[[0-9A-Za-z_*+%/()\-, \t]*\])
| (?P<float>-?(?:\d+\.\d*(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+|inf\b)|nan\b)
| (?P<int>-?\d+)
| (?P<string>"(?:[^"\\\n]|\\.)*")
| (?P<ident>[A-Za-z_][A-Za-z0-9_.]*)
| (?P<punct>->|[{}()\[\],=:<>])
""", re.VERBOSE)
_ESCAPE = re.compile(r'\\(?:([\\"nrt])|x([0-9a-fA-F]{2})|u([0-9a-fA-F]{4})|U([0-9a-fA-F]{8}))')
_ESCAPES = {"\\": "\\", '"': '"', "n": "\n", "r": "\r", "t": "\t"}
# deeper nesting than the printer ever writes is hostile input: Python's recursion
# limit must not be what stops it
MAX_DEPTH = 64
MAX_DIGITS = 100    # int() refuses > 4300 digits; no size, axis or value needs 100


class _Tok:
    __slots__ = ("kind", "text", "line", "col")

    def __init__(self, kind, text, line, col):
        self.kind, self.text, self.line, self.col = kind, text, line, col

    def __repr__(self):
        return f"{self.kind}:{self.text!r}@{self.line}:{self.col}"


def _tokenize(text: str) -> list[_Tok]:
    toks, pos, line, line_start = [], 0, 1, 0
    n = len(text)
    while pos < n:
        m = _TOKEN.match(text, pos)
        if m is None:
            raise IRParseError(f"unexpected character {text[pos]!r}", line, pos - line_start + 1,
                               text[line_start:].split("\n", 1)[0])
        kind = m.lastgroup
        if kind == "nl":
            line, line_start = line + 1, m.end()
        elif kind not in ("ws", "comment"):
            toks.append(_Tok(kind, m.group(), line, pos - line_start + 1))
        pos = m.end()
    toks.append(_Tok("eof", "", line, pos - line_start + 1))
    return toks


class _Parser:
    def __init__(self, text: str):
        self.lines = text.split("\n")
        self.toks = _tokenize(text)
        self.i = 0
        self.env: dict[str, Value] = {}
        self.depth = 0

    # ---------------------------------------------------------------- helpers
    def error(self, msg, tok=None):
        tok = tok or self.peek()
        src = self.lines[tok.line - 1] if 0 < tok.line <= len(self.lines) else ""
        if len(src) <= 160:
            return IRParseError(msg, tok.line, tok.col, src)
        # a hostile line can be megabytes long: show 120 characters around the column
        lo = max(0, tok.col - 61)
        e = IRParseError(msg, tok.line, tok.col)
        e.source_line = src
        e.args = (f"{e.args[0]}\n  ...{src[lo:lo + 120]}...\n  {' ' * (3 + tok.col - 1 - lo)}^",)
        return e

    def peek(self):
        return self.toks[self.i]

    def next(self):
        t = self.toks[self.i]
        self.i += 1
        return t

    def accept(self, text):
        if self.peek().text == text and self.peek().kind in ("punct", "ident"):
            return self.next()
        return None

    def expect(self, text):
        t = self.next()
        if t.text != text or t.kind not in ("punct", "ident"):
            raise self.error(f"expected {text!r}, found {t.text or 'end of input'!r}", t)
        return t

    def expect_kind(self, kind, what):
        t = self.next()
        if t.kind != kind:
            raise self.error(f"expected {what}, found {t.text or 'end of input'!r}", t)
        return t

    def int_(self, t):
        digits = t.text.lstrip("-")
        if len(digits) > MAX_DIGITS:
            raise self.error(f"integer literal of {len(digits)} digits is too long (at most {MAX_DIGITS})", t)
        return int(t.text)

    def string(self, t):
        """A string token's value: the printer's escapes (\\\\ and \\"), \\n \\r \\t, \\xHH, \\uHHHH, \\UHHHHHHHH."""
        body, out, pos = t.text[1:-1], [], 0
        while (k := body.find("\\", pos)) >= 0:
            out.append(body[pos:k])
            m = _ESCAPE.match(body, k)
            code = m and (m.group(2) or m.group(3) or m.group(4))
            if m is None or (code and int(code, 16) > 0x10FFFF):
                bad = body[k:k + 2] if m is None else m.group()
                raise self.error(f"invalid escape '{bad}' in string; known: \\\\ \\\" \\n \\r \\t \\xHH "
                                 "\\uHHHH \\UHHHHHHHH", _Tok(t.kind, t.text, t.line, t.col + 1 + k))
            out.append(_ESCAPES[m.group(1)] if m.group(1) else chr(int(code, 16)))
            pos = m.end()
        out.append(body[pos:])
        return "".join(out)

    # ---------------------------------------------------------------- grammar
    def type_(self):
        t = self.expect_kind("type", "a type like f32[4,3]")
        dt, dims = t.text.split("[", 1)
        dims = [d.strip() for d in dims[:-1].split(",")] if dims[:-1].strip() else []
        static = all(d.isdigit() and len(d) <= MAX_DIGITS for d in dims)
        if not static and not all((len(d) <= MAX_DIGITS) if d.isdigit() else (d and len(d) <= 256) for d in dims):
            raise self.error(f"malformed type {t.text!r}: dimensions must be integers or run-time sizes "
                             "separated by ','", t)
        try:
            if not static:
                return tensor_type(DTYPES[dt], tuple(int(d) if d.isdigit() else parse_dim(d) for d in dims))
            return tensor_type(DTYPES[dt], tuple(map(int, dims)))
        except SymfuseError as e:
            raise self.error(f"type {t.text}: {e}", t) from None

    def types(self):
        out = [self.type_()]
        while self.accept(","):
            out.append(self.type_())
        return out

    def define(self, tok, v):
        if tok.text in self.env:
            raise self.error(f"value {tok.text} is defined twice", tok)
        self.env[tok.text] = v

    def use(self):
        t = self.expect_kind("value", "a value like %0")
        v = self.env.get(t.text)
        if v is None:
            raise self.error(f"use of undefined value {t.text}", t)
        return v

    def params(self):
        params = []
        if self.peek().text != ")":
            while True:
                t = self.expect_kind("value", "a parameter like %x")
                if "#" in t.text:
                    raise self.error("parameter names cannot contain '#'", t)
                self.expect(":")
                v = Value(self.type_(), name=t.text[1:])
                self.define(t, v)
                params.append(v)
                if not self.accept(","):
                    break
        return params

    def attr_value(self, depth=0):
        t = self.next()
        if t.kind == "int":
            return self.int_(t)
        if t.kind == "float":
            return float(t.text)
        if t.kind == "string":
            return self.string(t)
        if t.kind == "ident":
            if t.text in ("true", "false"):
                return t.text == "true"
            if t.text == "none":
                return None
            if t.text in DTYPES:
                return DTYPES[t.text]
            if t.text == "dim":
                self.expect("<")
                s = self.expect_kind("string", 'a size like "batch*4"')
                self.expect(">")
                try:
                    return parse_dim(s.text[1:-1])
                except SymfuseError as e:
                    raise self.error(str(e), s) from None
            if t.text == "dense":
                self.expect("<")
                s = self.expect_kind("string", 'a hex string like "0x..."')
                self.expect(">")
                body = s.text[1:-1]
                if not body.startswith("0x"):
                    raise self.error("dense data must start with 0x", s)
                return ("hex", body[2:])
        if t.kind == "punct" and t.text == "[":
            if depth >= MAX_DEPTH:
                raise self.error(f"attribute lists nested more than {MAX_DEPTH} deep", t)
            items = []
            if self.peek().text != "]":
                while True:
                    items.append(self.attr_value(depth + 1))
                    if not self.accept(","):
                        break
            self.expect("]")
            return items
        raise self.error(f"expected an attribute value, found {t.text!r}", t)

    def attrs(self):
        attrs = {}
        self.expect("{")
        if self.peek().text != "}":
            while True:
                k = self.expect_kind("ident", "an attribute name")
                self.expect("=")
                attrs[k.text] = self.attr_value()
                if not self.accept(","):
                    break
        self.expect("}")
        return attrs

    def region(self):
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(f"regions nested more than {MAX_DEPTH} deep")
        self.expect("{")
        self.expect("(")
        params = self.params()
        self.expect(")")
        while self.peek().text != "yield":
            self.statement()
        self.next()
        results = [self.use()]
        while self.accept(","):
            results.append(self.use())
        self.expect("}")
        self.depth -= 1
        try:
            return Region(params, results)
        except SymfuseError as e:
            raise self.error(f"region: {e}") from None

    def statement(self):
        lhs = self.expect_kind("value", "a result like %0 (or 'return')")
        nres = 1
        if self.accept(":"):
            nres = self.int_(self.expect_kind("int", "a result count"))
        self.expect("=")
        name_tok = self.expect_kind("ident", "an op name")
        try:
            opdef = get_opdef(name_tok.text)
        except SymfuseError:
            raise self.error(f"unknown op {name_tok.text!r}", name_tok) from None
        inputs = []
        if self.peek().kind == "value":
            inputs.append(self.use())
            while self.accept(","):
                inputs.append(self.use())
        attrs = self.attrs() if self.peek().text == "{" else {}
        regions = []
        if self.accept("("):
            while self.peek().text == "{":
                regions.append(self.region())
            self.expect(")")
        self.expect(":")
        types = self.types()
        loc = None
        if self.peek().text == "loc":
            self.next()
            self.expect("(")
            f = self.expect_kind("string", "a file name")
            self.expect(":")
            ln = self.expect_kind("int", "a line number")
            loc = (self.string(f), self.int_(ln))
            if self.peek().kind == "string":         # the layer the op was built in
                loc += (self.string(self.next()),)
            self.expect(")")
        if len(types) != nres:
            raise self.error(f"{name_tok.text}: {nres} result(s) declared but {len(types)} type(s) given", name_tok)
        try:
            if opdef.attrs_from_text:
                attrs = opdef.attrs_from_text(attrs, types)
            attrs = {k: (tuple(_tuplify(v)) if isinstance(v, list) else v) for k, v in attrs.items()}
            with location(loc):
                out = apply(opdef, inputs, attrs, regions)
        except SymfuseError as e:
            raise self.error(str(e), name_tok) from None
        except Exception as e:  # noqa: BLE001 -- type rules expect the API's attribute types, text can hold any
            raise self.error(f"{name_tok.text}: invalid attributes ({type(e).__name__}: {e})", name_tok) from None
        outs = (out,) if isinstance(out, Value) else out
        got = [o.type for o in outs]
        if got != types:
            raise self.error(f"{name_tok.text}: declared type {', '.join(map(str, types))} but the op "
                             f"produces {', '.join(map(str, got))}", name_tok)
        if nres == 1:
            self.define(lhs, outs[0])
        else:
            for i, o in enumerate(outs):
                self.define(_Tok("value", f"{lhs.text}#{i}", lhs.line, lhs.col), o)

    def function(self):
        self.expect("func")
        name = self.expect_kind("sym", "a function name like @main").text[1:]
        self.expect("(")
        params = self.params()
        self.expect(")")
        self.expect("->")
        self.expect("(")
        rtypes = self.types() if self.peek().text != ")" else []
        self.expect(")")
        self.expect("{")
        while self.peek().text != "return":
            if self.peek().kind == "eof":
                raise self.error("missing 'return'")
            self.statement()
        ret = self.next()
        results = []
        if self.peek().kind == "value":
            results.append(self.use())
            while self.accept(","):
                results.append(self.use())
        self.expect("}")
        if [r.type for r in results] != rtypes:
            raise self.error(f"return types {[str(r.type) for r in results]} do not match the signature "
                             f"{[str(t) for t in rtypes]}", ret)
        return Function(params, results, name)


def _tuplify(v):
    return [tuple(_tuplify(x)) if isinstance(x, list) else x for x in v]


def parse(text: str) -> Function:
    """Parse one ``func`` in printed IR form into a Function."""
    if not isinstance(text, str):
        raise IRParseError(f"expected IR text as a str, got {type(text).__name__}", 1, 1)
    p = _Parser(text)
    fn = p.function()
    if p.peek().kind != "eof":
        raise p.error(f"unexpected {p.peek().text!r} after the function")
    return fn
