"""``paramgate demo``: the seed's walkthrough, replayed with real training steps.

The walkthrough (a MindSpore fine-tuning line explained step by step) filters a
frozen backbone out of the optimizer with
``filter(lambda x: x.requires_grad, head_net.get_parameters())``.  The demo builds
the same four parameters in a framework (NumPy by default), traces that filter,
audits the hand-off, trains a few steps and proves the backbone did not move.
Adapters supply the framework-specific pieces as a :class:`DemoKit` through the
``paramgate_demo_kit`` hook.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

from paramgate.api import audit, snapshot, trainable
from paramgate.plugins import ParamGatePluginManager

__all__ = ["SEED_LINE", "DemoKit", "run_demo"]

SEED_LINE = "opt = Momentum(filter(lambda x: x.requires_grad, head_net.get_parameters()), ...)"

_TEXT = {
    "en": {
        "title": "paramgate demo ({framework}): the seed's walkthrough, with real training steps",
        "model": "1. The model: a frozen backbone and a head to train",
        "filter": "2. The filter: filter(lambda x: x.requires_grad, all_model_params), step by step",
        "start": "Start filtering the parameters that need training...",
        "check": "Checking parameter: {name:<25} | requires_grad? -> {flag}",
        "passed": "  └─ PASSED! Added to the list to train.",
        "skipped": "  └─ SKIPPED! Frozen.",
        "done": "Filtering done!",
        "nofilter": "2. (--buggy) No filter: every parameter goes to the optimizer, with weight decay.",
        "audit": "3. The audit: what the optimizer will and will not touch",
        "handoff": "4. Handing over to the optimizer:",
        "train": "5. Training {steps} steps (snapshot: {n} fingerprints, no copies)",
        "step": "   step {i}  loss {loss:.6f}",
        "verdict": "6. Verdict",
        "changed": "changed",
        "unchanged": "unchanged",
        "ok": "The optimizer only saw the head; the frozen backbone kept every bit.",
        "bad": "The gate caught it: PG001 before training, PG101 after. Use paramgate.trainable(model).",
    },
    "zh": {
        "title": "paramgate 演示（{framework}）：重放“参数过滤器”的模拟流程，并真实训练几步",
        "model": "1. 模型：冻结的 Backbone 和待训练的 Head Net",
        "filter": "2. 执行过滤流程：模拟 filter() 的“安检”",
        "start": "开始筛选需要训练的参数...",
        "check": "检查参数: {name:<25} | requires_grad? -> {flag}",
        "passed": "  └─ PASSED! 已加入待训练列表。",
        "skipped": "  └─ SKIPPED! 已被冻结。",
        "done": "筛选完成！",
        "nofilter": "2. （--buggy）没有过滤：所有参数连同权重衰减一起交给了优化器。",
        "audit": "3. 审计：优化器会更新哪些参数、不会更新哪些参数",
        "handoff": "4. 最终递交给优化器：",
        "train": "5. 训练 {steps} 步（快照：{n} 个指纹，没有复制任何数据）",
        "step": "   第 {i} 步  loss {loss:.6f}",
        "verdict": "6. 结论",
        "changed": "已变化",
        "unchanged": "未变化",
        "ok": "优化器只看到了 Head；冻结的 Backbone 每一个比特都没有变。",
        "bad": "看门人抓住了问题：训练前 PG001，训练后 PG101。请使用 paramgate.trainable(model)。",
    },
}


@dataclass(frozen=True)
class DemoKit:
    """The framework-specific pieces of the demo, supplied by an adapter.

    :param framework: the framework's name as reports show it.
    :param build_model: returns the seed's four parameters (backbone.conv1.weight
        [64,3,3,3] and bias [64] frozen; head.dense.weight [[10,2],[10,1],[-8,9],[1,10]]
        and bias [0.5,0.5] trainable) as a model of the framework.
    :param all_parameters: every parameter of the model, frozen ones included.
    :param make_optimizer: ``(params, weight_decay) -> optimizer``: the framework's
        Momentum (learning rate and momentum of the kit's choosing).
    :param optimizer_code: how the optimizer call reads, ``{params}`` and
        ``{weight_decay}`` filled in, for the printed hand-off.
    :param train_step: ``(model, optimizer) -> loss``: one real training step.
    :param buggy_setup: for ``--buggy``, called on the fresh model before anything
        else: the mistake this framework's users make besides skipping the filter
        (torch: a backbone frozen after a backward pass still holds gradients, and
        torch optimizers step every parameter whose ``.grad`` is set).
    """

    framework: str
    build_model: Callable[[], object]
    all_parameters: Callable[[object], list[object]]
    make_optimizer: Callable[[list[object], float], object]
    optimizer_code: str
    train_step: Callable[[object, object], float]
    buggy_setup: Callable[[object], None] | None = None


def run_demo(
    kit: DemoKit,
    out: TextIO,
    *,
    plugins: ParamGatePluginManager,
    lang: str = "en",
    buggy: bool = False,
    as_json: bool = False,
    steps: int = 3,
) -> int:
    """Replay the walkthrough; return 0 when the gate found nothing wrong, else 1."""
    t = _TEXT[lang]
    model = kit.build_model()
    if buggy and kit.buggy_setup is not None:
        kit.buggy_setup(model)
    before = audit(model, plugins=plugins)
    if buggy:
        params, weight_decay = kit.all_parameters(model), 0.01
    else:
        params, weight_decay = trainable(model, plugins=plugins), 0.0
    optimizer = kit.make_optimizer(params, weight_decay)
    report = audit(model, optimizer, plugins=plugins)
    snap = snapshot(model, optimizer, plugins=plugins)
    losses = [kit.train_step(model, optimizer) for _ in range(steps)]
    verdict = snap.verify(model)
    failed = not (report.ok and verdict.ok)
    if as_json:
        json.dump({"audit": report.to_dict(), "invariance": verdict.to_dict()}, out, indent=2, ensure_ascii=False)
        out.write("\n")
        return int(failed)

    def say(line: str = "") -> None:
        out.write(line + "\n")

    say(t["title"].format(framework=kit.framework))
    say(f"   {SEED_LINE}")
    say()
    say(t["model"])
    width = max(len(p.name) for p in before.params)
    for p in before.params:
        say(f"   {p.name:<{width}}  {list(p.shape)!s:<14} {p.dtype:<9} requires_grad={p.trainable}")
    say()
    if buggy:
        say(t["nofilter"])
    else:
        say(t["filter"])
        say(t["start"])
        for p in before.params:
            say(t["check"].format(name=p.name, flag=p.trainable))
            say(t["passed"] if p.trainable else t["skipped"])
        say(t["done"])
    say()
    say(t["audit"])
    say(report.render(lang))
    say()
    say(t["handoff"])
    names = ", ".join(r.name for r in report.params if r.in_optimizer)
    say("   " + kit.optimizer_code.format(params=f"[{names}]", weight_decay=weight_decay))
    say()
    say(t["train"].format(steps=steps, n=len(snap.prints)))
    for i, loss in enumerate(losses, 1):
        say(t["step"].format(i=i, loss=loss))
    say()
    say(t["verdict"])
    moved_frozen = set(verdict.changed)
    still = {f.name for f in verdict.findings if f.code == "PG102"}
    for p in report.params:
        changed = p.name in moved_frozen if not p.trainable else p.name not in still
        role = p.role
        say(f"   {p.name:<{width}}  {role:<9}  {t['changed'] if changed else t['unchanged']}")
    say(verdict.render(lang))
    say()
    say(t["bad"] if failed else t["ok"])
    return int(failed)
