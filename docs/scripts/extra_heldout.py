"""The 347 held-back emoji images outside emoji64's val: data/emoji_more64/val less data/emoji64/val
(the same line = same caption and meta), written as an image folder (issue 20's selection set).

    python docs/scripts/extra_heldout.py   # -> data/emoji_more64_extra347/val
"""
import json, os, shutil
src, ref, out = 'data/emoji_more64/val', 'data/emoji64/val', 'data/emoji_more64_extra347/val'
key = lambda r: (r['text'], json.dumps(r['meta'], sort_keys=True))
seen = {key(json.loads(line)) for line in open(f'{ref}/metadata.jsonl')}
extra = [r for r in map(json.loads, open(f'{src}/metadata.jsonl')) if key(r) not in seen]
os.makedirs(out, exist_ok=True)
with open(f'{out}/metadata.jsonl', 'w') as f:
    for r in extra:
        shutil.copy(f"{src}/{r['file_name']}", f"{out}/{r['file_name']}")
        f.write(json.dumps(r) + '\n')
print(len(extra), 'images ->', out)
