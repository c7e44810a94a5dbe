#!/usr/bin/python3
"""Check a PGXN META.json: the Meta Spec 1.0.x's keys and formats, and our own rules.

    check-meta.py [--schema FILE] [--root DIR] [--control FILE] [--print-dist]
                  [--jsonschema] [--label TEXT] [META.json]
    check-meta.py --self-test [--jsonschema]

1. The document is checked against test/meta-schema.json, a JSON Schema
   (draft 2020-12) of our own written from the PGXN Meta Spec 1.0.0: PGXN's
   validator is a CPAN module that cannot be installed here.  The schema is
   applied by the small validator below (Python standard library only).  It
   knows the keywords the schema uses and refuses a schema that uses any
   other, so nothing in the schema is silently ignored.  With --jsonschema
   the document is also checked with Debian's python3-jsonschema, as a second
   opinion on the schema itself.
2. Then what a schema cannot say:
   - "version" and provides.<extension>.version equal the control file's
     default_version as a semantic version ('2.1' -> 2.1.0), where
     <extension> is the control file's name (apikey.control -> apikey);
   - every provides.*.file and docfile exists in the distribution.

--root is the distribution's top directory (default: META.json's
directory); --control defaults to the only *.control file in it.
--print-dist prints "NAME VERSION" on success (scripts/dist.sh uses it).
--self-test runs the checker on valid and broken documents and prints one
"ok"/"not ok" line per case.

Exit status: 0 valid, 1 invalid, 2 usage or internal error.
"""

import argparse
import glob
import json
import os
import re
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_SCHEMA = os.path.join(HERE, "meta-schema.json")


class SchemaError(Exception):
    """The schema itself is unusable (not the document)."""


# --------------------------------------------------------------- validator

ANNOTATIONS = {"$schema", "$id", "$comment", "title", "description", "examples",
               "$defs", "x-message", "default"}
KEYWORDS = {"$ref", "type", "enum", "const", "pattern", "minLength", "maxLength",
            "minItems", "uniqueItems", "items", "properties", "patternProperties",
            "additionalProperties", "required", "minProperties", "propertyNames",
            "oneOf", "anyOf", "allOf", "format"}
FORMATS = {"uri", "email", "x-relative-path"}

URI_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:[^\s]+\Z")
EMAIL_RE = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+\Z")


def json_type_ok(value, name):
    if name == "object":
        return isinstance(value, dict)
    if name == "array":
        return isinstance(value, list)
    if name == "string":
        return isinstance(value, str)
    if name == "boolean":
        return isinstance(value, bool)
    if name == "null":
        return value is None
    if name == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if name == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    raise SchemaError("unknown type %r" % name)


def json_equal(a, b):
    """JSON equality: true is not 1, 1 equals 1.0."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    return a == b


def compile_pattern(pattern):
    # ECMA-262 (JSON Schema) "$" matches only at the very end; Python's also
    # before a final newline.  "2.1.0\n" is not a version.
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        pattern = pattern[:-1] + r"\Z"
    return re.compile(pattern)


def relative_path_problem(value):
    if value.startswith("/"):
        return "is an absolute path"
    if "\\" in value:
        return "contains a backslash (paths use Unix form)"
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        return "contains a control character"
    parts = value.split("/")
    if any(p in ("", ".", "..") for p in parts):
        return "has an empty, '.' or '..' component"
    return None


def show(value, limit=60):
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[:limit - 3] + "..."


class Validator:
    def __init__(self, schema):
        self.root = schema
        self.patterns = {}
        self._check_schema(schema, "#")

    # -- the schema

    def _check_schema(self, schema, where):
        if isinstance(schema, bool):
            return
        if not isinstance(schema, dict):
            raise SchemaError("%s: a schema must be an object or a boolean" % where)
        unknown = set(schema) - KEYWORDS - ANNOTATIONS
        if unknown:
            raise SchemaError("%s: keyword(s) this checker does not implement: %s"
                              % (where, ", ".join(sorted(unknown))))
        for key in ("properties", "patternProperties", "$defs"):
            for name, sub in schema.get(key, {}).items():
                self._check_schema(sub, "%s/%s/%s" % (where, key, name))
        for key in ("additionalProperties", "items", "propertyNames"):
            if key in schema:
                self._check_schema(schema[key], "%s/%s" % (where, key))
        for key in ("oneOf", "anyOf", "allOf"):
            for i, sub in enumerate(schema.get(key, [])):
                self._check_schema(sub, "%s/%s/%d" % (where, key, i))
        for pattern in list(schema.get("patternProperties", {})) + (
                [schema["pattern"]] if "pattern" in schema else []):
            try:
                self.patterns[pattern] = compile_pattern(pattern)
            except re.error as e:
                raise SchemaError("%s: bad pattern %r: %s" % (where, pattern, e))
        if "format" in schema and schema["format"] not in FORMATS:
            raise SchemaError("%s: unknown format %r" % (where, schema["format"]))
        if "$ref" in schema:
            self._resolve(schema["$ref"])
        types = schema.get("type", [])
        for t in types if isinstance(types, list) else [types]:
            json_type_ok(None, t)

    def _resolve(self, ref):
        if not ref.startswith("#/"):
            raise SchemaError("only local references (#/...) are supported: %r" % ref)
        node = self.root
        for part in ref[2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(node, dict) or part not in node:
                raise SchemaError("unresolvable reference %r" % ref)
            node = node[part]
        return node

    # -- the document

    def errors(self, instance):
        return self._errors(self.root, instance, "")

    def _errors(self, schema, value, path):
        if schema is True:
            return []
        if schema is False:
            return ["%s: not allowed here" % (path or "/")]
        where = path or "/"
        out = []

        def fail(message):
            hint = schema.get("x-message")
            out.append("%s: %s%s" % (where, message, " (%s)" % hint if hint else ""))

        if "$ref" in schema:
            out += self._errors(self._resolve(schema["$ref"]), value, path)

        if "type" in schema:
            types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
            if not any(json_type_ok(value, t) for t in types):
                fail("%s is not of type %s" % (show(value), " or ".join(types)))
                return out      # the other keywords would only repeat it

        if "enum" in schema and not any(json_equal(value, e) for e in schema["enum"]):
            fail("%s is not one of: %s" % (show(value), ", ".join(show(e) for e in schema["enum"])))
        if "const" in schema and not json_equal(value, schema["const"]):
            fail("%s is not %s" % (show(value), show(schema["const"])))

        if isinstance(value, str):
            if "minLength" in schema and len(value) < schema["minLength"]:
                fail("%s is %s" % (show(value), "empty" if not value else
                                   "shorter than %d characters" % schema["minLength"]))
            if "maxLength" in schema and len(value) > schema["maxLength"]:
                fail("%s is longer than %d characters" % (show(value), schema["maxLength"]))
            if "pattern" in schema and not self.patterns[schema["pattern"]].search(value):
                if "x-message" in schema:
                    fail("%s is not valid" % show(value))
                else:
                    fail("%s does not match %s" % (show(value), schema["pattern"]))
            fmt = schema.get("format")
            if fmt == "uri" and not URI_RE.match(value):
                fail("%s is not a URI" % show(value))
            elif fmt == "email" and not EMAIL_RE.match(value):
                fail("%s is not an email address" % show(value))
            elif fmt == "x-relative-path":
                problem = relative_path_problem(value)
                if problem:
                    fail("%s %s" % (show(value), problem))

        if isinstance(value, list):
            if "minItems" in schema and len(value) < schema["minItems"]:
                fail("needs at least %d item(s)" % schema["minItems"])
            if schema.get("uniqueItems"):
                for i in range(len(value)):
                    if any(json_equal(value[i], value[j]) for j in range(i)):
                        fail("item %s appears twice" % show(value[i]))
            if "items" in schema:
                for i, item in enumerate(value):
                    out += self._errors(schema["items"], item, "%s/%d" % (path, i))

        if isinstance(value, dict):
            for key in schema.get("required", []):
                if key not in value:
                    fail("the required key %s is missing" % show(key))
            if "minProperties" in schema and len(value) < schema["minProperties"]:
                fail("needs at least %d key(s)" % schema["minProperties"])
            props = schema.get("properties", {})
            pprops = schema.get("patternProperties", {})
            for key, sub in value.items():
                sub_path = "%s/%s" % (path, key.replace("~", "~0").replace("/", "~1"))
                if "propertyNames" in schema:
                    for e in self._errors(schema["propertyNames"], key, sub_path):
                        out.append("%s (the key name)" % e)
                matched = False
                if key in props:
                    matched = True
                    out += self._errors(props[key], sub, sub_path)
                for pattern, psub in pprops.items():
                    if self.patterns[pattern].search(key):
                        matched = True
                        out += self._errors(psub, sub, sub_path)
                if not matched and "additionalProperties" in schema:
                    extra = schema["additionalProperties"]
                    if extra is False:
                        out.append("%s: unknown key %s (the spec's keys, or x_... for a custom one)"
                                   % (where, show(key)))
                    else:
                        out += self._errors(extra, sub, sub_path)

        for sub in schema.get("allOf", []):
            out += self._errors(sub, value, path)
        for key in ("oneOf", "anyOf"):
            if key not in schema:
                continue
            results = [self._errors(sub, value, path) for sub in schema[key]]
            passing = sum(1 for r in results if not r)
            if key == "oneOf" and passing > 1:
                fail("matches more than one of the allowed forms")
            if passing == 0:
                # Show why the form meant for this kind of value failed (the
                # one that got past its type check), else a summary.
                close = [r for r in results if not any(" is not of type " in e for e in r)]
                if len(close) == 1:
                    out += close[0]
                else:
                    fail("%s matches none of the allowed forms: %s"
                         % (show(value), "; ".join(r[0] for r in results)))
        return out


# --------------------------------------------------------------- our rules

def reject_duplicates(pairs):
    seen = {}
    for key, value in pairs:
        if key in seen:
            raise ValueError("the key %r appears twice in one object" % key)
        seen[key] = value
    return seen


def load_json(path):
    with open(path, encoding="utf-8") as f:
        return json.loads(f.read(), object_pairs_hook=reject_duplicates)


def read_control(path):
    """The control file's parameters: name = 'value' lines, # comments."""
    params = {}
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            m = re.match(r"([A-Za-z_]+)\s*=\s*(?:'((?:[^']|'')*)'|([^\s#]*))\s*(#.*)?$", line)
            if not m:
                raise ValueError("%s:%d: cannot parse %r" % (path, n, line))
            params[m.group(1)] = m.group(2).replace("''", "'") if m.group(2) is not None else m.group(3)
    return params


def to_semver(version):
    """An extension version ('2.1', '2', '2.1.3') as a semantic version."""
    if not re.match(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*)){0,2}\Z", version):
        raise ValueError("default_version %r is not one to three dot-separated numbers, "
                         "so it has no semantic version" % version)
    parts = version.split(".")
    return ".".join(parts + ["0"] * (3 - len(parts)))


def consistency_errors(meta, root, control):
    errs = []
    try:
        params = read_control(control)
    except (OSError, ValueError) as e:
        return ["cannot read the control file: %s" % e]
    extname = os.path.basename(control)[:-len(".control")]
    cname = os.path.basename(control)
    if "default_version" not in params:
        return ["%s has no default_version" % cname]
    try:
        want = to_semver(params["default_version"])
    except ValueError as e:
        return ["%s: %s" % (cname, e)]
    why = "%s's default_version '%s' means %s" % (cname, params["default_version"], want)
    if meta.get("version") != want:
        errs.append('/version: is %s but %s: set "version": "%s"' % (show(meta.get("version")), why, want))
    provides = meta.get("provides") or {}
    if extname not in provides:
        errs.append("/provides: has no entry for the extension %s" % show(extname))
    elif provides[extname].get("version") != want:
        errs.append('/provides/%s/version: is %s but %s: set "version": "%s"'
                    % (extname, show(provides[extname].get("version")), why, want))
    real_root = os.path.realpath(root)
    for name, ext in provides.items():
        if not isinstance(ext, dict):
            continue
        for key in ("file", "docfile"):
            rel = ext.get(key)
            if not isinstance(rel, str):
                continue
            full = os.path.realpath(os.path.join(root, rel))
            if not (full.startswith(real_root + os.sep) and os.path.isfile(full)):
                errs.append("/provides/%s/%s: %s is not a file in the distribution" % (name, key, show(rel)))
    return errs


def check(meta_path, schema_path, root=None, control=None, use_jsonschema=False):
    """(errors, meta): every problem found; meta is None if unreadable."""
    root = root or os.path.dirname(os.path.abspath(meta_path))
    try:
        meta = load_json(meta_path)
    except (OSError, ValueError) as e:
        return ["%s is not valid JSON: %s" % (meta_path, e)], None
    schema = load_json(schema_path)
    errs = Validator(schema).errors(meta)
    if use_jsonschema:
        errs += jsonschema_errors(schema, meta)
    if control is None:
        found = sorted(glob.glob(os.path.join(root, "*.control")))
        if len(found) != 1:
            return errs + ["expected one *.control file in %s, found %d (use --control)"
                           % (root, len(found))], meta
        control = found[0]
    errs += consistency_errors(meta, root, control)
    return errs, meta


def jsonschema_errors(schema, meta):
    try:
        import jsonschema
    except ImportError:
        return ["--jsonschema: python3-jsonschema is not installed (apt-get install python3-jsonschema)"]
    cls = jsonschema.Draft202012Validator
    try:
        cls.check_schema(schema)
    except jsonschema.exceptions.SchemaError as e:
        raise SchemaError("python3-jsonschema rejects the schema: %s" % e.message)
    v = cls(schema, format_checker=jsonschema.FormatChecker())
    return ["python3-jsonschema: /%s: %s" % ("/".join(str(p) for p in e.absolute_path), e.message)
            for e in v.iter_errors(meta)]


# --------------------------------------------------------------- self-test

def base_meta():
    return {
        "name": "apikey",
        "abstract": "API keys",
        "version": "2.1.0",
        "maintainer": ["A Maintainer <a@example.org>"],
        "license": "postgresql",
        "provides": {"apikey": {"file": "apikey.control", "version": "2.1.0",
                                "abstract": "API keys", "docfile": "doc/apikey.md"}},
        "meta-spec": {"version": "1.0.0", "url": "https://pgxn.org/meta/spec.txt"},
    }


def setter(path, value):
    """A change to the base document: set (or, with value None, delete) PATH."""
    def change(doc):
        keys = path.split("/")
        node = doc
        for k in keys[:-1]:
            node = node[k]
        if value is None:
            del node[keys[-1]]
        else:
            node[keys[-1]] = value
    return change


# (description, change, expect_valid, ours_only): ours_only marks cases where
# python3-jsonschema is not expected to agree (formats it does not assert,
# "$" before a final newline).
SCHEMA_CASES = [
    ("the base document", None, True, False),
    ("maintainer as one string", setter("maintainer", "A <a@example.org>"), True, False),
    ("license as a list", setter("license", ["postgresql", "mit"]), True, False),
    ("license as name -> URL", setter("license", {"PostgreSQL": "https://www.postgresql.org/about/licence"}), True, False),
    ("prereqs with ranges and 0", setter("prereqs", {"runtime": {"requires": {"PostgreSQL": ">= 15.0.0, < 19.0.0", "plpgsql": 0}}, "test": {"recommends": {"pgTAP": "1.2.0"}}}), True, False),
    ("optional keys", lambda d: d.update({"description": "Longer.", "generated_by": "hand", "release_status": "stable", "tags": ["api key", "security"], "no_index": {"directory": ["bench"]}, "resources": {"homepage": "https://example.org/", "bugtracker": {"web": "https://example.org/issues"}, "repository": {"url": "https://example.org/r.git", "type": "git"}}}), True, False),
    ("a custom x_ key", setter("x_tested_postgresql", ["15", "18"]), True, False),
    ("a prerelease version", lambda d: d.update(version="2.1.0-rc.1"), True, False),
] + [
    ("missing %s" % key, setter(key, None), False, False)
    for key in ("name", "abstract", "version", "maintainer", "license", "provides", "meta-spec")
] + [
    ("version '2.1'", setter("version", "2.1"), False, False),
    ("version '2.1.0.1'", setter("version", "2.1.0.1"), False, False),
    ("version '02.1.0'", setter("version", "02.1.0"), False, False),
    ("version as a number", setter("version", 2.1), False, False),
    ("version with a final newline", setter("version", "2.1.0\n"), False, True),
    ("license 'PostgreSQL' (case)", setter("license", "PostgreSQL"), False, False),
    ("license 'postgres'", setter("license", "postgres"), False, False),
    ("license []", setter("license", []), False, False),
    ("license URL not a URI", setter("license", {"PostgreSQL": "see the file"}), False, True),
    ("name of one character", setter("name", "a"), False, False),
    ("name with a space", setter("name", "api key"), False, False),
    ("name with a slash", setter("name", "api/key"), False, False),
    ("maintainer []", setter("maintainer", []), False, False),
    ("maintainer ''", setter("maintainer", ""), False, False),
    ("abstract ''", setter("abstract", ""), False, False),
    ("provides {}", setter("provides", {}), False, False),
    ("provides.apikey without file", setter("provides/apikey/file", None), False, False),
    ("provides.apikey without version", setter("provides/apikey/version", None), False, False),
    ("provides.apikey without abstract", setter("provides/apikey/abstract", None), False, False),
    ("provides.apikey version '2.1'", setter("provides/apikey/version", "2.1"), False, False),
    ("provides.apikey unknown key", setter("provides/apikey/files", "x"), False, False),
    ("provides.apikey file outside the tree", setter("provides/apikey/file", "../apikey.control"), False, True),
    ("provides.apikey file absolute", setter("provides/apikey/file", "/etc/passwd"), False, True),
    ("meta-spec without version", setter("meta-spec/version", None), False, False),
    ("meta-spec version 2.0.0", setter("meta-spec/version", "2.0.0"), False, False),
    ("meta-spec url elsewhere", setter("meta-spec/url", "https://example.org/spec"), False, False),
    ("unknown top-level key", setter("homepage", "https://example.org/"), False, False),
    ("tags []", setter("tags", []), False, False),
    ("a tag with a slash", setter("tags", ["a/b"]), False, False),
    ("release_status 'beta'", setter("release_status", "beta"), False, False),
    ("prereqs phase 'runtimes'", setter("prereqs", {"runtimes": {"requires": {"PostgreSQL": "15.0.0"}}}), False, False),
    ("prereqs relationship 'require'", setter("prereqs", {"runtime": {"require": {"PostgreSQL": "15.0.0"}}}), False, False),
    ("prereqs range '15'", setter("prereqs", {"runtime": {"requires": {"PostgreSQL": "15"}}}), False, False),
    ("resources homepage not a URI", setter("resources", {"homepage": "example dot org"}), False, True),
    ("resources repository without url or web", setter("resources", {"repository": {"type": "git"}}), False, False),
    ("no_index {}", setter("no_index", {}), False, False),
]

# (description, change to the document, control file text, expect_valid)
CONTROL_21 = "# c\ncomment = 'x'\ndefault_version = '2.1'\nrelocatable = false\n"
RULE_CASES = [
    ("versions agree with default_version 2.1", None, CONTROL_21, True),
    ("default_version 2.2 needs 2.2.0", None, CONTROL_21.replace("2.1", "2.2"), False),
    ("default_version 2.2, META 2.2.0", lambda d: (d.update(version="2.2.0"), d["provides"]["apikey"].update(version="2.2.0")), CONTROL_21.replace("2.1", "2.2"), True),
    ("default_version 2 means 2.0.0", lambda d: (d.update(version="2.0.0"), d["provides"]["apikey"].update(version="2.0.0")), CONTROL_21.replace("2.1", "2"), True),
    ("META version 2.0.0 vs 2.1", setter("version", "2.0.0"), CONTROL_21, False),
    ("provides version 2.0.0 vs 2.1", setter("provides/apikey/version", "2.0.0"), CONTROL_21, False),
    ("default_version '2.1beta' has no semver", None, CONTROL_21.replace("2.1", "2.1beta"), False),
    ("no default_version", None, "comment = 'x'\n", False),
    ("provides has no 'apikey'", lambda d: d.update(provides={"other": d["provides"]["apikey"]}), CONTROL_21, False),
    ("provides file missing", setter("provides/apikey/file", "sql/apikey.sql"), CONTROL_21, False),
    ("provides docfile missing", setter("provides/apikey/docfile", "doc/missing.md"), CONTROL_21, False),
]


def self_test(schema_path, use_jsonschema):
    import copy
    n = failed = 0

    def report(ok, desc, details):
        nonlocal n, failed
        n += 1
        failed += not ok
        print("%s %d - %s" % ("ok" if ok else "not ok", n, desc))
        if not ok:
            for d in details:
                print("#   %s" % d)

    schema = load_json(schema_path)
    validator = Validator(schema)
    for desc, change, valid, ours_only in SCHEMA_CASES:
        doc = base_meta()
        if change:
            change(doc)
        errs = validator.errors(doc)
        report(bool(errs) != valid, "schema: %s is %s" % (desc, "accepted" if valid else "rejected"),
               errs or ["accepted, should have been rejected"])
        if use_jsonschema and not ours_only:
            jerrs = jsonschema_errors(schema, doc)
            report(bool(jerrs) != valid, "python3-jsonschema agrees: %s" % desc,
                   jerrs or ["python3-jsonschema accepted it"])

    with tempfile.TemporaryDirectory() as root:
        os.makedirs(os.path.join(root, "doc"))
        open(os.path.join(root, "doc", "apikey.md"), "w").close()
        control = os.path.join(root, "apikey.control")
        for desc, change, control_text, valid in RULE_CASES:
            doc = base_meta()
            if change:
                change(doc)
            with open(control, "w") as f:
                f.write(control_text)
            meta_path = os.path.join(root, "META.json")
            with open(meta_path, "w") as f:
                json.dump(doc, f)
            errs, _ = check(meta_path, schema_path, root, control)
            report(bool(errs) != valid, "rules: %s: %s" % (desc, "valid" if valid else "invalid"),
                   errs or ["accepted, should have been rejected"])
        meta_path = os.path.join(root, "META.json")
        with open(meta_path, "w") as f:
            f.write(json.dumps(base_meta())[:-1] + ', "name": "again"}')
        errs, _ = check(meta_path, schema_path, root, control)
        report(any("appears twice" in e for e in errs), "a key given twice is rejected",
               errs or ["accepted"])
    print("1..%d" % n)
    return 1 if failed else 0


# --------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("meta", nargs="?", default="META.json")
    ap.add_argument("--schema", default=DEFAULT_SCHEMA)
    ap.add_argument("--root")
    ap.add_argument("--control")
    ap.add_argument("--print-dist", action="store_true")
    ap.add_argument("--jsonschema", action="store_true")
    ap.add_argument("--self-test", action="store_true")
    ap.add_argument("--label", help="how to name the document in messages")
    args = ap.parse_args()
    try:
        if args.self_test:
            return self_test(args.schema, args.jsonschema)
        errs, meta = check(args.meta, args.schema, args.root, args.control, args.jsonschema)
    except SchemaError as e:
        print("check-meta: the schema %s is unusable: %s" % (args.schema, e), file=sys.stderr)
        return 2
    except (OSError, ValueError) as e:
        print("check-meta: %s" % e, file=sys.stderr)
        return 2
    label = args.label or args.meta
    schema_shown = os.path.abspath(args.schema)
    if schema_shown.startswith(os.path.dirname(HERE) + os.sep):
        schema_shown = os.path.relpath(schema_shown, os.path.dirname(HERE))
    if errs:
        print("check-meta: %s is invalid (PGXN Meta Spec 1.0 and our rules, see %s):"
              % (label, schema_shown), file=sys.stderr)
        for e in errs:
            print("  %s" % e, file=sys.stderr)
        return 1
    if args.print_dist:
        print(meta["name"], meta["version"])
    else:
        print("check-meta: %s is valid (%s %s)" % (label, meta["name"], meta["version"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
