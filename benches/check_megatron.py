"""Checks that kiln's Megatron shards (in manifest order) hold exactly the documents and
token ids of Megatron-LM's preprocess_data.py output: the concatenated .bin bytes and
the per-document lengths of the .idx files are compared.

    python check_megatron.py <kiln sink> <megatron output prefix>
"""

import json
import struct
import sys

import numpy as np


def index(path):
    with open(path, "rb") as f:
        assert f.read(9) == b"MMIDIDX\x00\x00", path
        (version,) = struct.unpack("<Q", f.read(8))
        (code,) = struct.unpack("<B", f.read(1))
        (n,) = struct.unpack("<Q", f.read(8))
        f.read(8)
        return code, np.frombuffer(f.read(4 * n), dtype=np.int32)


sink, prefix = sys.argv[1].rstrip("/"), sys.argv[2]
shards = json.load(open(f"{sink}/_kiln/manifest.json"))["shards"]
codes, lengths, kiln_bin = set(), [], bytearray()
for s in shards:
    code, ls = index(f"{sink}/{s['index']['path']}")
    codes.add(code)
    lengths.append(ls)
    kiln_bin += open(f"{sink}/{s['path']}", "rb").read()
peer_code, peer_lengths = index(prefix + ".idx")
peer_bin = open(prefix + ".bin", "rb").read()
kiln_lengths = np.concatenate(lengths)
same = (codes == {peer_code} and np.array_equal(kiln_lengths, peer_lengths)
        and bytes(kiln_bin) == peer_bin)
print(json.dumps({"documents": int(len(kiln_lengths)), "peer_documents": int(len(peer_lengths)),
                  "tokens": int(kiln_lengths.sum()), "peer_tokens": int(peer_lengths.sum()),
                  "dtype_codes": sorted(codes), "peer_dtype_code": peer_code,
                  "identical": bool(same)}))
sys.exit(0 if same else 1)
