#!/usr/bin/env python3
"""Regenerate the checked-in seed corpora test/fuzz/corpus/{token,scope}/.

The seeds are the cases of the regression tests (sql/token_format.sql,
sql/v2_scopes.sql, sql/v2_verify.sql) and of test/unit/run_unit.c, in the
input format of the harnesses (see fuzz_token.c / fuzz_scope.c):

  token: first byte = mode ('0' raw, '1' checksum fix-up, '2' structured,
         '3' generator), the rest is the payload.
  scope: scopes separated by '\\n'.

Only needed when the seeds change; run.sh does not use it.
    python3 test/fuzz/make_seeds.py
"""
import os
import shutil
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def b62(value, width=6):
    out = ""
    for _ in range(width):
        out = B62[value % 62] + out
        value //= 62
    return out


def token(prefix="ak", env="live", body="Q7fK2mZp9XbR4tLw8NcV1hJd6GsY3eAu"):
    head = f"{prefix}_{env}_{body}"
    return head + b62(zlib.crc32(head.encode()))


T = token()
T_TEST = token(env="test", body="h3Kd9QpL2xV7bN4mR8tZ1cW6yF5gJ0sA")
TOKEN = {
    # raw mode: the verify argument as a client sends it
    "valid_ak_live": "0" + T,
    "valid_ak_test": "0" + T_TEST,
    "valid_ak_staging2": "0" + token(env="staging2"),
    "valid_zz_live": "0" + token(prefix="zz"),
    "valid_prefix16": "0" + token(prefix="p23456789012345x"),
    "valid_env16": "0" + token(env="a1234567890abcde"),
    "valid_body60": "0" + token(body="Zx" * 30),
    "bad_checksum": "0" + T[:-1] + ("A" if T[-1] != "A" else "B"),
    "bad_case_changed": "0" + T[:8] + T[8].swapcase() + T[9:],
    "last_char_dropped": "0" + T[:-1],
    "char_appended": "0" + T + "A",
    "checksum_only": "0ak_live_" + T[-6:],
    "body_only": "0" + T[:-6],
    "checksum_of_other": "0" + T[:-6] + T_TEST[-6:],
    "swapped": "0" + T[:9] + T[10] + T[9] + T[11:],
    "bearer": "0Bearer " + T,
    "bearer_lower_blanks": "0bearer  " + T + "  ",
    "bearer_upper_tab": "0BEARER\t" + T,
    "bearer_mixed_leading": "0  BeArEr " + T,
    "bearer_crlf": "0Bearer " + T + "\r\n",
    "bare_blanks": "0 \t" + T + " ",
    "bearer_alone": "0Bearer",
    "bearer_blanks": "0  Bearer   ",
    "basic_scheme": "0Basic " + T,
    "bearer_no_blank": "0Bearer" + T,
    "bearer_twice": "0Bearer Bearer " + T,
    "blank_inside": "0" + T[:20] + " " + T[20:],
    "empty": "0",
    "blanks_only": "0 \t\r\n ",
    "ours_256": "0ak_live_" + "a" * 248,
    "foreign_256": "0" + "y" * 256,
    "foreign_255_bearer": "0  Bearer \t" + "y" * 255 + "  ",
    "two_byte_256": b"0" + "\u00e9".encode("utf-8") * 128,
    "legacy_token": "0legacy-token-123",
    "short_body": "0ak_live_short",
    "upper_env": "0ak_Live_0123456789012345678901234567890123456789",
    "empty_env": "0ak__0123456789012345678901234567890123456789",
    "akx_prefix": "0akx_live_abc",
    "env17": "0" + token(env="a1234567890abcdef"),
    "nul_inside": "0" + T[:12] + "\0" + T[13:],
    "underscores_short": "0x_y_abcd",
    # fix-up mode: the last 6 characters get the right checksum
    "fixup_ak_live": "1ak_live_" + "0123456789ABCDEFGHIJabcdefghijkl" + "000000",
    "fixup_bearer": "1Bearer ak_test_" + "Zz" * 20 + "000000",
    "fixup_prefix16": "1p23456789012345x_a1234567890abcde_" + "9" * 32 + "000000",
    # structured: flags, prefix length, env length, prefix, env, body
    "struct_bearer": "2\x19\x02\x04aklive" + "0123456789ABCDEFGHIJabcdefghijkl",
    "struct_corrupt": "2\x38\x16\x04aklive" + "0123456789ABCDEFGHIJabcdefghijkl",
    "struct_table_prefix": "2\x5b\x00\x04live" + "0123456789ABCDEFGHIJabcdefghijkl",
    "struct_raw_names": "2\x04\x03\x03a_bc d" + "x" * 40,
    # generator: plen, elen, width|fail, 4 value bytes, names, random bytes
    "gen_default": "3\x01\x03\x06\xff\xff\xff\xffaklive" + "".join(chr(i) for i in range(256)),
    "gen_fail": "3\x01\x03\xf6\x00\x00\x00\x3dak",
}

SCOPE = {
    "documents_read": "documents:read",
    "star": "*",
    "star_star": "*:*",
    "charset": "docs.v2-beta_x:read\nmy_res.v2-x:do_it.now-1\nmy_res.v2-x:*",
    "wildcards": "*:read\ndocuments:*",
    "presets": "conversations:*\ndocuments:*\nplugins:execute",
    "covers_set": "documents:read\ndocuments:write\nplugins:read\ndocuments:*\n*:read\n*\n*:*\ndocuments:delete",
    "invalid_missing_action": "documents",
    "invalid_empty_action": "documents:",
    "invalid_empty_resource": ":read",
    "invalid_upper": "Documents:read\nPlugins:run",
    "invalid_two_colons": "docs:read:write",
    "invalid_blank": "docs:re ad",
    "invalid_star_inside": "do*cs:read\n**\n*a:b",
    "invalid_non_ascii": "docum\u00e9nts:read".encode("utf-8"),
    "invalid_nul": "doc\0s:read",
    "empty": "",
    "empty_lines": "\n\ndocuments:read\n\n",
    "max_255": "a" * 127 + ":" + "b" * 127,
    "over_256": "a" * 128 + ":" + "b" * 127,
    "mixed": "documents:read\nplugins:*\nbilling:view\nplugins:run\n\"\"",
    # a set for apikey_scope_set_sort/covers: duplicates, shared prefixes
    "set_16": "\n".join(["doc:read", "docs:read", "docs.v2:read", "docs:*", "doc:read",
                         "*:write", "docs:re", "docs:reader", "a:b", "a:*", "*:b", "b:a",
                         "docs:read", "x-y:z_1", "*", "doc:write"]),
}


def write(kind, seeds):
    d = os.path.join(HERE, "corpus", kind)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    for name, text in seeds.items():
        with open(os.path.join(d, name), "wb") as f:
            # str: one byte per character (the \x.. escapes are bytes)
            f.write(text if isinstance(text, bytes) else text.encode("latin-1"))


if __name__ == "__main__":
    write("token", TOKEN)
    write("scope", SCOPE)
    print(f"{len(TOKEN)} token seeds, {len(SCOPE)} scope seeds")
