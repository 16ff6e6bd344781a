#!/usr/bin/env python3
"""Build the offline token-estimator calibration corpus (dataplane/corpus/*.jsonl).

Deterministic: fixed seed, sorted file lists, no network. It reads

  * files already on a Weir development machine (Debian bookworm image:
    /usr/share, /usr/include, /usr/bin, the cargo registry, the pyenv
    Python 3.11.7 tree, the global npm install, the OpenJDK 17 src.zip), and
  * Debian packages fetched with `apt-get download` and unpacked with
    `dpkg-deb -x` under --deb-root (default /tmp/corpus_src/root); see
    PROVENANCE.md for the exact package list and commands.

Output: en.jsonl code.jsonl json.jsonl zh.jsonl ja.jsonl ko.jsonl, one
{"source": ..., "text": ...} object per line (ensure_ascii=False), plus
sources.tsv listing every source file used (category, group, source, samples,
owning package / licence).

Usage: python3 dataplane/corpus/build_corpus.py [--deb-root DIR] [--out DIR]
"""
import argparse
import ast
import gettext
import glob
import gzip
import hashlib
import html
import json
import math
import os
import random
import re
import subprocess
import sys
import unicodedata
import zipfile
from html.parser import HTMLParser

SEED = 20261125
MIN_BYTES = 300
MAX_BYTES = 6000
FILE_BUDGET = 400_000   # bytes of JSONL per category file
MAX_SAMPLES = 400
PER_FILE_CAP = 18       # samples from one source file (< 10% of a category of ~200-260)

HOME = os.path.expanduser("~")
CARGO_SRC = sorted(glob.glob(os.path.join(HOME, ".cargo/registry/src/*")))
# The cargo registry cache grows as other work fetches crates; only the crates
# pinned in crates.txt (name-version, one per line) are used, so the output
# does not depend on what else happens to be cached.
PINNED_CRATES_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "crates.txt")
PY = "/root/.pyenv/versions/3.11.7/lib/python3.11"
NPM = "/usr/lib/node_modules/npm"
JDK_SRC_REL = "usr/lib/jvm/openjdk-17/lib/src.zip"  # from openjdk-17-source, under --deb-root

# Debian packages fetched with apt-get download (bookworm), name -> version.
DEBS = {
    "manpages-zh": "1.6.4.0-1",
    "manpages-ja": "0.5.0.0.20221215+dfsg-1",
    "debian-faq": "11.1",
    "debian-faq-ko": "11.1",
    "debian-faq-ja": "11.1",
    "debian-faq-zh-cn": "11.1",
    "debian-reference-ja": "2.100",
    "debian-reference-zh-cn": "2.100",
    "maint-guide-ja": "1.2.53",
    "maint-guide-zh-cn": "1.2.53",
    "debian-policy-ja": "4.6.2.0",
    "libreoffice-help-ko": "4:7.4.7-1+deb12u14",
    "openjdk-17-source": "17.0.21.1+2-1~deb12u1",
}


# --------------------------------------------------------------------------
# text extraction

def read_bytes(path):
    if "::" in path:  # zip member: archive::member
        arc, member = path.split("::", 1)
        with zipfile.ZipFile(arc) as z:
            return z.read(member)
    with open(path, "rb") as f:
        data = f.read()
    if path.endswith(".gz"):
        data = gzip.decompress(data)
    return data


def read_text(path):
    try:
        t = read_bytes(path).decode("utf-8")
    except (UnicodeDecodeError, OSError, zipfile.BadZipFile, EOFError):
        return None
    t = t.replace("\r\n", "\n").replace("\r", "\n")
    if t.startswith("\ufeff"):
        t = t[1:]
    return t


class _HTMLText(HTMLParser):
    BLOCK = {"p", "div", "br", "li", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6",
             "tr", "table", "pre", "dt", "dd", "dl", "section", "blockquote", "title",
             "hr", "header", "footer", "article", "caption"}
    CELL = {"td", "th"}
    SKIP = {"script", "style", "head", "nav"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.out, self.skip, self.pre, self.h1 = [], 0, 0, None

    def handle_starttag(self, tag, attrs):
        if tag == "h1" and self.h1 is None:
            self.h1 = len(self.out)
        if tag in self.CELL:
            self.out.append("\t")
        elif tag in self.SKIP:
            self.skip += 1
        elif tag == "pre":
            self.pre += 1
            self.out.append("\n")
        elif tag in self.BLOCK:
            self.out.append("\n")

    def handle_endtag(self, tag):
        if tag in self.SKIP:
            self.skip = max(0, self.skip - 1)
        elif tag == "pre":
            self.pre = max(0, self.pre - 1)
            self.out.append("\n")
        elif tag in self.BLOCK:
            self.out.append("\n")

    def handle_data(self, data):
        if self.skip:
            return
        if self.pre:
            self.out.append(data)
        else:
            self.out.append(re.sub(r"\s+", " ", data))


def html_to_text(t):
    p = _HTMLText()
    p.feed(t)
    p.close()
    body = p.out[p.h1:] if p.h1 is not None else p.out  # drop navigation before the first <h1>
    lines = [re.sub(r"^\t+|\t+$", "", ln).replace("\t\t", "\t").rstrip() for ln in "".join(body).split("\n")]
    lines = [re.sub(r" *\t *", "\t", ln).strip() if not ln.startswith("    ") else ln for ln in lines]
    text = "\n".join(lines)
    text = text.split("Help content debug info:")[0]  # LibreOffice help footer
    return re.sub(r"\n{3,}", "\n\n", text).strip()


_ROFF_ESC = [
    (r"\\[fmnFgk](\[[^\]]*\]|\(..|.)", ""), (r"\\[hvwlLDNoZxXb]'[^']*'", ""), (r"\\[udtap{}]", ""), (r"\\s[+-]?\d", ""), (r"\\\*(\[[^\]]*\]|\(..|.)", ""),
    (r"\\\(em", "—"), (r"\\\(en", "–"), (r"\\\((lq|rq|dq)", '"'), (r"\\\((oq|cq|aq)", "'"),
    (r"\\\(bu", "•"), (r"\\\(co", "©"), (r"\\\(mu", "×"), (r"\\\(..", ""), (r"\\\[[^\]]*\]", ""),
    (r"\\-", "-"), (r"\\[&,/|^c%]", ""), (r"\\ ", " "), (r"\\~", " "), (r"\\e", "\\\\"),
    (r"\\\\", "\\\\"), (r'\\"', ""),
]


def roff_to_text(t):
    """Strip man(7) roff to plain text; filled paragraphs are joined into one line each."""
    out, para = [], []
    fill, tag_next = True, False

    def flush():
        if para:
            out.append(" ".join(p.strip() for p in para if p.strip()))
            para.clear()

    def text_line(s):
        nonlocal tag_next
        if not fill:
            out.append(s)
        elif tag_next:
            flush()
            out.append(s)
            tag_next = False
        else:
            para.append(s)

    for line in t.split("\n"):
        if line.startswith(('.\\"', "'\\\"", '\\"')) or line.strip() in (".", "'"):
            continue
        if line.startswith((".", "'")) and len(line) > 1:
            m = re.match(r"[.'](\S+)\s*(.*)", line)
            if not m:
                continue
            mac, arg = m.group(1), m.group(2)
            args = [a[1:-1] if a.startswith('"') and a.endswith('"') else a
                    for a in re.findall(r'"[^"]*"|\S+', arg)]
            if mac in ("SH", "SS"):
                flush()
                out += ["", " ".join(args), ""]
            elif mac in ("PP", "P", "LP", "sp", "HP", "RS", "RE"):
                flush()
                out.append("")
            elif mac == "TP":
                flush()
                out.append("")
                tag_next = True
            elif mac == "IP":
                flush()
                out.append("")
                if args and args[0] not in ("", "\\(bu", "\\(em", "-", "*"):
                    out.append(args[0])
            elif mac == "br":
                flush()
            elif mac == "nf":
                flush()
                fill = False
            elif mac == "fi":
                fill = True
            elif mac in ("B", "I", "SM", "SB", "UR", "MT"):
                text_line(" ".join(args))
            elif len(mac) == 2 and set(mac) <= set("BIR"):
                text_line("".join(args))
            continue  # .TH .ad .so .de ... dropped
        text_line(line)
    flush()
    text = "\n".join(out)
    for pat, rep in _ROFF_ESC:
        text = re.sub(pat, rep, text)
    text = "\n".join(ln.rstrip() for ln in text.split("\n"))
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def mo_to_text(path):
    try:
        with open(path, "rb") as f:
            cat = gettext.GNUTranslations(f)._catalog
    except Exception:
        return None
    paras = []
    for k in sorted(cat, key=lambda k: str(k)):
        if k == "" or (isinstance(k, tuple) and k[0] == ""):
            continue
        v = cat[k].strip()
        if v and v not in paras:
            paras.append(v)
    return "\n\n".join(paras)


def metadata_description(path):
    t = read_text(path)
    if t is None:
        return None
    head, sep, body = t.partition("\n\n")
    return body.strip() if sep else None


def py_docstrings(path):
    t = read_text(path)
    if t is None:
        return None
    try:
        tree = ast.parse(t)
    except SyntaxError:
        return None
    docs = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            d = ast.get_docstring(node)
            if d and len(d) > 200:
                docs.append(d)
    return "\n\n".join(docs)


# --------------------------------------------------------------------------
# chunking and validation

CJK_RANGES = [(0x3000, 0x303F), (0x3040, 0x309F), (0x30A0, 0x30FF), (0x3100, 0x312F),
              (0x3130, 0x318F), (0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xAC00, 0xD7AF),
              (0x1100, 0x11FF), (0xF900, 0xFAFF), (0xFF00, 0xFFEF), (0x31F0, 0x31FF),
              (0x20000, 0x2FA1F)]


def script_counts(s):
    c = {"cjk": 0, "kana": 0, "hangul": 0, "han": 0}
    for ch in s:
        o = ord(ch)
        if o < 0x3000:
            continue
        if any(a <= o <= b for a, b in CJK_RANGES):
            c["cjk"] += 1
            if 0x3040 <= o <= 0x30FF or 0x31F0 <= o <= 0x31FF:
                c["kana"] += 1
            elif 0xAC00 <= o <= 0xD7AF or 0x1100 <= o <= 0x11FF or 0x3130 <= o <= 0x318F:
                c["hangul"] += 1
            elif 0x3400 <= o <= 0x9FFF or 0xF900 <= o <= 0xFAFF or o >= 0x20000:
                c["han"] += 1
    return c


def valid(text, cat):
    b = len(text.encode("utf-8"))
    if b < MIN_BYTES or b > MAX_BYTES:
        return False
    if "\ufffd" in text or "\x00" in text:
        return False
    if any(unicodedata.category(ch) == "Cc" and ch not in "\n\t" for ch in text):
        return False
    nonspace = sum(1 for ch in text if not ch.isspace())
    if nonspace < 0.5 * len(text) or nonspace < 100:
        return False
    if cat == "en":
        alpha = sum(1 for ch in text if ch.isascii() and ch.isalpha())
        nonascii = sum(1 for ch in text if not ch.isascii())
        return alpha >= 0.6 * nonspace and nonascii <= 0.02 * len(text)
    if cat in ("zh", "ja", "ko"):
        c = script_counts(text)
        if c["cjk"] < 0.5 * len(text):
            return False
        if cat == "zh":
            return c["kana"] == 0 and c["hangul"] == 0
        if cat == "ja":
            return c["kana"] >= 0.1 * c["cjk"] and c["hangul"] == 0
        return c["hangul"] >= 0.6 * c["cjk"] and c["kana"] == 0
    return True


def file_rng(tag):
    return random.Random(int(hashlib.sha256(f"{SEED}:{tag}".encode()).hexdigest()[:16], 16))


def target_size(rng):
    return int(math.exp(rng.uniform(math.log(MIN_BYTES), math.log(MAX_BYTES))))


def chunk_lines(text, rng):
    """Cut text into consecutive chunks on line boundaries with log-uniform target sizes."""
    lines = text.split("\n")
    chunks, cur, size, target = [], [], 0, target_size(rng)
    # random starting line so file headers (licence banners) are not always chunk 0
    skip = rng.randrange(0, max(1, min(len(lines) // 4, 40)))
    for ln in lines[skip:]:
        lb = len(ln.encode("utf-8")) + 1
        if cur and size + lb > MAX_BYTES:
            chunks.append("\n".join(cur))
            cur, size, target = [], 0, target_size(rng)
        cur.append(ln)
        size += lb
        if size >= target:
            chunks.append("\n".join(cur))
            cur, size, target = [], 0, target_size(rng)
    if cur:
        chunks.append("\n".join(cur))
    out = []
    for c in chunks:
        c = c.strip("\n")
        # drop leading/trailing blank lines, keep indentation of the first line
        out.append(c)
    return out


def json_chunks(text, rng):
    b = len(text.encode("utf-8"))
    if b <= MAX_BYTES:
        return [text.strip("\n")]
    try:
        doc = json.loads(text)
    except ValueError:
        return []
    m = re.search(r"\n( +)\S", text)
    if "\n" not in text.strip():
        kw = {"separators": (",", ":")}
    else:
        kw = {"indent": len(m.group(1)) if m else 2}
    cands = []

    def walk(node, depth):
        items = node.items() if isinstance(node, dict) else (
            enumerate(node) if isinstance(node, list) else [])
        for k, v in items:
            if not isinstance(v, (dict, list)):
                continue
            wrapped = {k: v} if isinstance(node, dict) else v
            s = json.dumps(wrapped, ensure_ascii=False, **kw)
            n = len(s.encode("utf-8"))
            if MIN_BYTES <= n <= MAX_BYTES:
                cands.append(s)
            elif n > MAX_BYTES and depth < 6:
                walk(v, depth + 1)

    walk(doc, 0)
    return cands


# --------------------------------------------------------------------------
# sources

def G(name, weight, files, kind, label):
    """A source group: files (sorted list), kind of extraction, label(path)->source string."""
    return {"name": name, "weight": weight, "files": sorted(set(files)), "kind": kind, "label": label}


DEB_ROOT = "/tmp/corpus_src/root"


def deb_label(pkg):
    return lambda p: f"debian:{pkg} {DEBS[pkg]}:/{os.path.relpath(p, DEB_ROOT)}"


def crate_label(p):
    rel = p.split("/registry/src/", 1)[1].split("/", 1)[1]
    return f"crates.io:{rel}"


def py_label(p):
    rel = os.path.relpath(p, PY)
    if rel.startswith("site-packages/"):
        parts = rel.split("/")
        return f"pypi:{rel[len('site-packages/'):]}"
    return f"cpython-3.11.7-stdlib:Lib/{rel}"


def npm_label(p):
    return "npm:npm-" + npm_version() + "/" + os.path.relpath(p, NPM)


_npm_v = None


def npm_version():
    global _npm_v
    if _npm_v is None:
        _npm_v = json.load(open(os.path.join(NPM, "package.json")))["version"]
    return _npm_v


def sys_label(p):
    return f"debian-system:{p}"


def is_shell_script(p):
    try:
        with open(p, "rb") as f:
            head = f.read(64)
    except OSError:
        return False
    first = head.split(b"\n", 1)[0]
    return bool(re.match(rb"#! ?/(usr/)?bin/(env )?(ba|da)?sh\b", first))


def rglob(root, pattern):
    return glob.glob(os.path.join(root, "**", pattern), recursive=True)


def sources(deb_root):
    D = lambda *p: os.path.join(deb_root, *p)
    S = {}
    pinned = set(open(PINNED_CRATES_FILE).read().split())
    crate_dirs = {}
    for c in CARGO_SRC:
        for d in sorted(glob.glob(os.path.join(c, "*"))):
            if os.path.basename(d) in pinned:
                crate_dirs.setdefault(os.path.basename(d), d)
    missing = sorted(pinned - set(crate_dirs))
    if missing:
        print(f"warning: {len(missing)} pinned crates not in the cargo registry cache: "
              + " ".join(missing[:10]), file=sys.stderr)
    crates = lambda pat: [f for _, d in sorted(crate_dirs.items())
                          for f in glob.glob(os.path.join(d, pat), recursive=True)]
    S["en"] = [
        G("crate-readme", 0.22, crates("README*.md"), "text", crate_label),
        G("crate-docs", 0.05, [f for f in crates("**/*.md") if "README" not in f and "CHANGELOG" not in f.upper()],
          "text", crate_label),
        G("debian-usr-share-doc", 0.18,
          [f for f in glob.glob("/usr/share/doc/*/README*") + glob.glob("/usr/share/doc/*/*.txt*")
           if not os.path.islink(f) and re.search(r"(README[^/]*|\.txt)(\.gz)?$", f)], "text", sys_label),
        G("common-licenses", 0.07, [f for f in glob.glob("/usr/share/common-licenses/*") if not os.path.islink(f)],
          "text", sys_label),
        G("debian-faq-en", 0.06, [D("usr/share/doc/debian/FAQ/debian-faq.en.txt.gz")], "text", deb_label("debian-faq")),
        G("npm-docs", 0.14, rglob(os.path.join(NPM, "docs/content"), "*.md")
          + glob.glob(os.path.join(NPM, "node_modules/*/README.md"))
          + glob.glob(os.path.join(NPM, "node_modules/@*/*/README.md")), "text", npm_label),
        G("pypi-metadata", 0.16, glob.glob(os.path.join(PY, "site-packages/*.dist-info/METADATA")),
          "metadata", py_label),
        G("cpython-docstrings", 0.12, [f for f in glob.glob(os.path.join(PY, "*.py"))
                                        + glob.glob(os.path.join(PY, "*/*.py"))
                                        if "/test" not in f and "site-packages" not in f], "docstrings", py_label),
    ]
    S["code"] = [
        G("rust", 0.24, [f for f in crates("**/*.rs") if "/windows" not in f], "code", crate_label),
        G("python", 0.18, [f for f in rglob(PY, "*.py") if "site-packages" not in f and "/test/" not in f
                            and "/lib2to3/tests" not in f], "code", py_label),
        G("c-header", 0.08, glob.glob("/usr/include/*.h") + glob.glob("/usr/include/*/*.h"), "code", sys_label),
        G("c-source", 0.07, crates("**/*.c"), "code", crate_label),
        G("javascript", 0.14, [f for f in rglob(os.path.join(NPM, "node_modules"), "*.js") + rglob(os.path.join(NPM, "lib"), "*.js")
                                if ".min." not in f], "code", npm_label),
        G("shell", 0.10, [f for f in glob.glob("/usr/bin/*") + glob.glob("/etc/init.d/*")
                           if os.path.isfile(f) and not os.path.islink(f) and is_shell_script(f)], "code", sys_label),
        G("java", 0.10, java_members(D(JDK_SRC_REL)), "code",
          lambda p: f"debian:openjdk-17-source {DEBS['openjdk-17-source']}:/{JDK_SRC_REL}::{p.split('::', 1)[1]}"),
        G("go", 0.03, glob.glob("/usr/share/doc/git/contrib/persistent-https/*.go"), "code", sys_label),
        G("perl", 0.06, rglob("/usr/share/perl5", "*.pm"), "code", sys_label),
    ]
    S["json"] = [
        G("botocore-data", 0.26, rglob(os.path.join(PY, "site-packages/botocore/data"), "*.json")
          + rglob(os.path.join(PY, "site-packages/boto3/data"), "*.json"), "json", py_label),
        G("cfn-lint-data", 0.22, rglob(os.path.join(PY, "site-packages/cfnlint/data"), "*.json"), "json", py_label),
        G("json-schemas", 0.12, rglob(os.path.join(PY, "site-packages/jsonschema_specifications"), "*.json")
          + rglob(os.path.join(PY, "site-packages/openapi_spec_validator"), "*.json")
          + rglob(os.path.join(PY, "site-packages/openapi_schema_validator"), "*.json")
          + rglob(os.path.join(PY, "site-packages/samtranslator"), "*.json"), "json", py_label),
        G("npm-package-json", 0.22, rglob(os.path.join(NPM, "node_modules"), "package.json")
          + [os.path.join(NPM, "package.json")], "json", npm_label),
        G("iso-codes", 0.06, glob.glob("/usr/share/iso-codes/json/*.json"), "json", sys_label),
        G("cpython-test-json", 0.04, rglob(os.path.join(PY, "test"), "*.json"), "json", py_label),
        G("misc-json", 0.06, [f for f in crates("**/*.json") if "encoder.json" not in f]
          + glob.glob("/usr/share/doc/nodejs/*.json*") + glob.glob("/usr/share/glvnd/egl_vendor.d/*.json"),
          "json", lambda p: crate_label(p) if "/registry/src/" in p else sys_label(p)),
    ]
    man = lambda lang: glob.glob(D("usr/share/man", lang, "man*", "*"))
    S["zh"] = [
        G("manpages-zh_CN", 0.35, man("zh_CN"), "roff", deb_label("manpages-zh")),
        G("manpages-zh_TW", 0.08, man("zh_TW"), "roff", deb_label("manpages-zh")),
        G("debian-reference-zh-cn", 0.27, glob.glob(D("usr/share/debian-reference/*.zh-cn.html")), "html",
          deb_label("debian-reference-zh-cn")),
        G("maint-guide-zh-cn", 0.12, [D("usr/share/doc/maint-guide-zh-cn/maint-guide.zh-cn.txt.gz")], "text",
          deb_label("maint-guide-zh-cn")),
        G("debian-faq-zh-cn", 0.12, [D("usr/share/doc/debian/FAQ/debian-faq.zh-cn.txt.gz")], "text",
          deb_label("debian-faq-zh-cn")),
        G("manpages-zh-docs", 0.06, [D("usr/share/doc/manpages-zh/FAQ.gz"), D("usr/share/doc/manpages-zh/README.md.gz")],
          "text", deb_label("manpages-zh")),
    ]
    S["ja"] = [
        G("manpages-ja", 0.36, man("ja"), "roff", deb_label("manpages-ja")),
        G("debian-reference-ja", 0.26, glob.glob(D("usr/share/debian-reference/*.ja.html")), "html",
          deb_label("debian-reference-ja")),
        G("maint-guide-ja", 0.12, [D("usr/share/doc/maint-guide-ja/maint-guide.ja.txt.gz")], "text",
          deb_label("maint-guide-ja")),
        G("debian-faq-ja", 0.12, [D("usr/share/doc/debian/FAQ/debian-faq.ja.txt.gz")], "text",
          deb_label("debian-faq-ja")),
        G("debian-policy-ja", 0.14, rglob(D("usr/share/doc/debian-policy/ja"), "*.html"), "html",
          deb_label("debian-policy-ja")),
    ]
    S["ko"] = [
        G("libreoffice-help-ko", 0.72, rglob(D("usr/share/libreoffice/help/ko"), "*.html"), "html",
          deb_label("libreoffice-help-ko")),
        G("debian-faq-ko", 0.12, [D("usr/share/doc/debian/FAQ/debian-faq.ko.txt.gz")], "text",
          deb_label("debian-faq-ko")),
        G("gettext-ko", 0.16, [f for f in glob.glob("/usr/share/locale/ko/LC_MESSAGES/*.mo")
                               if not os.path.basename(f).startswith("iso_")]
          + glob.glob("/usr/share/vim/vim90/lang/ko.UTF-8/LC_MESSAGES/*.mo"), "mo", sys_label),
    ]
    return S


def java_members(src_zip):
    if not os.path.exists(src_zip):
        return []
    with zipfile.ZipFile(src_zip) as z:
        names = [n for n in z.namelist() if n.endswith(".java") and n.startswith("java.base/java/")
                 or n.startswith(("java.net.http/", "java.sql/java/", "jdk.httpserver/")) and n.endswith(".java")]
    return [f"{src_zip}::{n}" for n in names]


def extract(path, kind):
    if kind == "mo":
        return mo_to_text(path)
    if kind == "metadata":
        return metadata_description(path)
    if kind == "docstrings":
        return py_docstrings(path)
    t = read_text(path)
    if t is None:
        return None
    if kind == "html":
        return html_to_text(t)
    if kind == "roff":
        return roff_to_text(t)
    return t


def file_chunks(path, kind, cat):
    text = extract(path, kind)
    if not text:
        return []
    rng = file_rng(path)
    chunks = json_chunks(text, rng) if kind == "json" else chunk_lines(text, rng)
    chunks = [c for c in chunks if valid(c, cat)]
    rng.shuffle(chunks)
    return chunks


# --------------------------------------------------------------------------

def take_one(st, cat, cap):
    """Next chunk from the group's next live file (cycling through its shuffled files)."""
    files = st["files"]
    while len(st["dead"]) < len(files):
        path = files[st["pos"] % len(files)]
        st["pos"] += 1
        if path in st["dead"]:
            continue
        if path not in st["cache"]:
            st["cache"][path] = file_chunks(path, st["g"]["kind"], cat)
        q = st["cache"][path]
        if not q or st["used"].get(path, 0) >= cap:
            st["dead"].add(path)
            st["cache"][path] = []
            continue
        st["used"][path] = st["used"].get(path, 0) + 1
        return path, q.pop()
    return None


def build_category(cat, groups):
    rng = random.Random(f"{SEED}:{cat}")
    cap = PER_FILE_CAP
    state = []
    for g in groups:
        files = list(g["files"])
        random.Random(f"{SEED}:{cat}:{g['name']}").shuffle(files)
        if files:
            state.append({"g": g, "files": files, "pos": 0, "cache": {}, "used": {}, "dead": set()})
    out, total = [], 0
    while state and total < FILE_BUDGET and len(out) < MAX_SAMPLES:
        st = rng.choices(state, weights=[s["g"]["weight"] for s in state])[0]
        picked = take_one(st, cat, cap)
        if picked is None:
            state.remove(st)  # group exhausted
            continue
        path, text = picked
        line = json.dumps({"source": st["g"]["label"](path), "text": text}, ensure_ascii=False)
        total += len(line.encode("utf-8")) + 1
        out.append((st["g"]["name"], path, line))
    return out


def owners(paths):
    """Debian package (name version) owning each system path, via dpkg -S."""
    paths = [p for p in paths if p.startswith(("/usr/", "/etc/"))]

    def query(ps):
        res = {}
        for i in range(0, len(ps), 200):
            try:
                out = subprocess.run(["dpkg", "-S"] + ps[i:i + 200], capture_output=True, text=True).stdout
            except OSError:
                return res
            for ln in out.splitlines():
                pkg, _, p = ln.partition(": ")
                res[p.strip()] = pkg.split(",")[0].split(":")[0]
        return res

    def alternatives(p):
        alts = [os.path.realpath(p)]
        if p.startswith(("/usr/bin/", "/usr/sbin/")):
            alts.append(p[4:])
        m = re.match(r"(/usr/share/doc/[^/]+)/", p)
        if m:
            alts.append(m.group(1))
        return alts

    found = query(paths)
    res = {p: found[p] for p in paths if p in found}
    missing = [p for p in paths if p not in res]
    alt_map = {p: alternatives(p) for p in missing}
    found2 = query(sorted({a for alts in alt_map.values() for a in alts}))
    for p, alts in alt_map.items():
        for a in alts:
            if a in found2:
                res[p] = found2[a]
                break
    vers = {}
    for pkg in sorted(set(res.values())):
        vers[pkg] = subprocess.run(["dpkg-query", "-W", "-f=${Version}", pkg],
                                   capture_output=True, text=True).stdout
    return {p: f"{pkg} {vers.get(pkg, '')}".strip() for p, pkg in res.items()}


_dist_map = None


def dist_owning(top):
    """dist-info directories whose RECORD lists files under site-packages/<top>/."""
    global _dist_map
    if _dist_map is None:
        _dist_map = {}
        for d in sorted(glob.glob(os.path.join(PY, "site-packages/*.dist-info"))):
            try:
                rec = open(os.path.join(d, "RECORD"), encoding="utf-8").read().splitlines()
            except OSError:
                continue
            for ln in rec:
                first = ln.split(",")[0].split("/")[0]
                _dist_map.setdefault(first, [])
                if d not in _dist_map[first]:
                    _dist_map[first].append(d)
    return _dist_map.get(top, [])


def licence_of(path):
    if "/registry/src/" in path:
        crate_dir = os.path.join(path.split("/registry/src/")[0], "registry/src",
                                 *path.split("/registry/src/")[1].split("/")[:2])
        try:
            m = re.search(r'^license\s*=\s*"([^"]+)"', open(os.path.join(crate_dir, "Cargo.toml")).read(), re.M)
            return m.group(1) if m else "see crate"
        except OSError:
            return "see crate"
    if path.startswith(NPM):
        d = os.path.dirname(path)
        while d.startswith(NPM):
            pj = os.path.join(d, "package.json")
            if os.path.exists(pj):
                try:
                    pj_doc = json.load(open(pj))
                except ValueError:
                    pj_doc = {}
                lic = pj_doc.get("license") or pj_doc.get("licenses")
                if lic:
                    return lic if isinstance(lic, str) else json.dumps(lic)
            d = os.path.dirname(d)
        return "see package"
    if path.startswith(os.path.join(PY, "site-packages/")):
        top = os.path.relpath(path, os.path.join(PY, "site-packages")).split("/")[0]
        if top.endswith(".dist-info"):
            metas = [os.path.join(PY, "site-packages", top, "METADATA")]
        else:
            metas = [os.path.join(d, "METADATA") for d in dist_owning(top)]
        for m in metas:
            head = open(m, encoding="utf-8", errors="replace").read().split("\n\n")[0]
            lic = re.search(r"^License-Expression: (.+)$", head, re.M) or re.search(r"^License: (.{1,60})$", head, re.M)
            cls = re.findall(r"^Classifier: License :: (.+)$", head, re.M)
            name = re.search(r"^Name: (.+)$", head, re.M)
            ver = re.search(r"^Version: (.+)$", head, re.M)
            pkg = f"{name.group(1)} {ver.group(1)}" if name and ver else top
            return f"PyPI {pkg}: " + (lic.group(1) if lic else (cls[-1] if cls else "see METADATA"))
        return "see package"
    if path.startswith(PY):
        return "PSF-2.0 (CPython 3.11.7)"
    if JDK_SRC_REL in path:
        return "GPL-2.0 WITH Classpath-exception-2.0 (openjdk-17-source)"
    return "see /usr/share/doc/<package>/copyright"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--deb-root", default="/tmp/corpus_src/root")
    ap.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)))
    a = ap.parse_args()
    global DEB_ROOT
    DEB_ROOT = a.deb_root
    missing = [p for p in ["usr/share/man/zh_CN", "usr/share/man/ja", "usr/share/libreoffice/help/ko"]
               if not os.path.isdir(os.path.join(a.deb_root, p))]
    if missing:
        sys.exit(f"missing unpacked Debian packages under {a.deb_root}: {missing} (see PROVENANCE.md)")
    S = sources(a.deb_root)
    rows = []
    for cat in ["en", "code", "json", "zh", "ja", "ko"]:
        recs = build_category(cat, S[cat])
        with open(os.path.join(a.out, f"{cat}.jsonl"), "w", encoding="utf-8") as f:
            for _, _, line in recs:
                f.write(line + "\n")
        size = os.path.getsize(os.path.join(a.out, f"{cat}.jsonl"))
        by_group = {}
        for g, p, _ in recs:
            by_group[g] = by_group.get(g, 0) + 1
        nfiles = len({p for _, p, _ in recs})
        print(f"{cat}.jsonl: {len(recs)} samples, {size} bytes, {nfiles} source files; "
              + ", ".join(f"{k}={v}" for k, v in sorted(by_group.items())))
        counts = {}
        for g, p, line in recs:
            key = (g, p, json.loads(line)["source"])
            counts[key] = counts.get(key, 0) + 1
        for (g, p, src), n in sorted(counts.items()):
            rows.append((cat, g, src, n, p))
    own = owners(sorted({r[4] for r in rows}))
    with open(os.path.join(a.out, "sources.tsv"), "w", encoding="utf-8") as f:
        f.write("category\tgroup\tsource\tsamples\tdebian_package\tlicence\n")
        for cat, g, src, n, p in rows:
            if src.startswith("debian:"):
                pkg = src.split(":")[1]
                lic = "see PROVENANCE.md (Debian package)"
            else:
                pkg = own.get(p, "")
                lic = licence_of(p)
            f.write(f"{cat}\t{g}\t{src}\t{n}\t{pkg}\t{lic}\n")


if __name__ == "__main__":
    main()
