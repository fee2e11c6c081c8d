# The old hand loop (git 4874947^, distill/train.py), as its build_adapter ran it, on DIR/train.jsonl; saves the adapter.
import json, random, sys, time, logging
import torch
from tokenizers import Tokenizer
from transformers import AutoModelForCausalLM
from peft import LoraConfig, get_peft_model
from distill.train import TrainConfig, batches, train, IGNORE
logging.basicConfig(level=logging.INFO)
data, steps, threads, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
torch.set_num_threads(threads)
base_dir = "/work/main/distill/artifacts/arith-student/base"
tok = Tokenizer.from_file(base_dir + "/tokenizer.json")
enc = []
for line in open(data):
    r = json.loads(line)
    p, c = tok.encode(r["prompt"]).ids, tok.encode(r["completion"]).ids  # as the old encode() did
    enc.append((p + c, [IGNORE] * len(p) + c))
base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
lora = LoraConfig(r=64, lora_alpha=64, lora_dropout=0.0, target_modules=["q_proj","k_proj","v_proj","o_proj","gate_proj","up_proj","down_proj"],
                  task_type="CAUSAL_LM", modules_to_save=["embed_tokens", "lm_head"])
torch.manual_seed(1)  # build_adapter: cfg.seed + 1
model = get_peft_model(base, lora)
it = batches(enc, 32, tok.token_to_id("<|pad|>"), random.Random(1))
cfg = TrainConfig(steps=steps, batch_size=32, lr=2e-3, warmup=100, weight_decay=0.01, log_every=500, eval_every=10**9)
s = train(model, it, cfg, None, "old")
model.peft_config["default"].base_model_name_or_path = "../base"
model.save_pretrained(out)
print(json.dumps({"loop": "old", "steps": steps, "seconds": s, "steps_per_s": steps / s}))
