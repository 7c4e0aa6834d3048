"""Transfer learning page: VGG16 / MobileNetV2 / MobileNet, three strategies, sweeps, few-shot GTSRB."""

import pandas as pd
import streamlit as st

from core import experiments, jobs, runs, serving
from core.datasets import registry
from core.models import backbones
from core.training import backbone_family as family
from core.training import families
from core.training.transfer_support import STRATEGIES
from ui import common
from ui import transfer as transfer_ui
from ui.transferability import transferability_panel

SESSION_DEFAULTS = {"transfer_last_run_id": None, "transfer_last_sweep": [],
                    "transfer_last_experiment": None}
BACKBONE_SOURCES = ("ImageNet", "Weights file on this machine", "Finished run")
LAN_BACKBONE_SOURCES = ("ImageNet", "Finished run")  # no input that names a server path
STRATEGY_HELP = {
    "feature-extraction": "Freeze the pretrained base, train only the new head. Best with little "
                          "data similar to ImageNet.",
    "fine-tune": "Feature extraction first, then unfreeze the base's last blocks (VGG16: block5) "
                 "and keep training at a low learning rate. BatchNorm stays in inference mode. "
                 "Epochs keep counting across both stages.",
    "scratch": "The same network with random weights, all trainable, same data and epochs: the "
               "control every transfer result is measured against.",
}
LEARNING_RATES = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2)
NATURAL_SIZE = {"dogs-vs-cats": 224, "gtsrb": 32, "synthetic-signs": 32}

common.page_header(
    "Transfer learning",
    "Reuse what a network learnt on one task for another. The study's second experiment: VGG16 "
    "pretrained on ImageNet, a new head for **Dogs vs Cats**, trained three ways — feature "
    "extraction, fine-tuning and, as the control, from scratch. MobileNetV2 and MobileNet do the "
    "same in minutes on a laptop CPU. Every run is a job with live curves; compare them on the "
    "**Compare runs** page.",
)
common.init_session_state()
common.init_session_state(SESSION_DEFAULTS)

# --- what to train ---------------------------------------------------------------------------------
st.subheader("1 · Data, backbone and strategy")
left, right = st.columns(2)
with left:
    dataset = st.selectbox("Dataset", sorted(registry.DATASET_NAMES, key=lambda name: name != "dogs-vs-cats"),
                           key="transfer_dataset",
                           format_func=lambda name: registry.get_info(name).title)
    state = registry.status(dataset)
    if state != "ready":
        st.warning(f"{registry.get_info(dataset).title} is {state} here: install it on the "
                   "**Data & weights** page first (training fails without it).", icon=":material/warning:")
    strategy = st.radio("Strategy", STRATEGIES, key="transfer_strategy", horizontal=True,
                        help="The study's three implementation strategies.")
    st.caption(STRATEGY_HELP[strategy])
with right:
    model = st.selectbox("Backbone network", backbones.BACKBONE_NAMES, key="transfer_model",
                         format_func=backbones.BACKBONE_TITLES.get)
    weights_source = st.radio("Pretrained weights",
                              BACKBONE_SOURCES if common.server_paths_allowed() else LAN_BACKBONE_SOURCES,
                              key="transfer_weights_source",
                              disabled=strategy == "scratch",
                              help="Scratch always starts from random weights.")
defaults = family.defaults_for(model)

image_size_default = NATURAL_SIZE.get(dataset, 224)
settings_left, settings_mid, settings_right = st.columns(3)
with settings_left:
    image_size = int(st.number_input("Image size (px)", min_value=32, max_value=512,
                                     value=image_size_default, step=16, key=f"transfer_image_size_{dataset}",
                                     help="The study: 224 × 224 × 3. Smaller is much faster on a CPU."))
    epochs = int(st.number_input("Epochs (whole budget)", min_value=1, max_value=500,
                                 value=defaults["epochs"], key=f"transfer_epochs_{model}",
                                 help="The study (VGG16): 100 on cached features. MobileNets: 30."))
    fine_tune_epochs = fine_tune_blocks = None
    if strategy == "fine-tune":
        module = backbones.backbone_module(model)
        fine_tune_epochs = int(st.number_input(
            "of which fine-tuning", min_value=1, max_value=epochs,
            value=min(epochs, defaults["fine_tune_epochs"] or max(1, epochs // 2)),
            key=f"transfer_fine_tune_epochs_{model}"))
        fine_tune_blocks = int(st.number_input(
            "Unfreeze the last N blocks", min_value=1, max_value=module.NUM_BLOCKS,
            value=module.DEFAULT_FINE_TUNE_BLOCKS, key=f"transfer_fine_tune_blocks_{model}",
            help="VGG16: 1 = block5 (the study). MobileNetV2: 3 = blocks 14–16 and the last 1×1 "
                 "convolution. MobileNet: 2 = the two 7×7 blocks."))
with settings_mid:
    batch_size = int(st.number_input("Batch size", min_value=1, max_value=1024, value=defaults["batch_size"],
                                     key="transfer_batch_size", help="The study: 100."))
    learning_rate = st.select_slider(f"Learning rate ({defaults['optimizer']})", LEARNING_RATES,
                                     value=defaults["learning_rate"], key=f"transfer_learning_rate_{model}",
                                     format_func=lambda value: f"{value:g}",
                                     help="The study: SGD 1e-4 with momentum 0.9; MobileNets: Adam 1e-3.")
with settings_right:
    train_size = int(st.number_input(
        "Training images (train_size)", min_value=10, max_value=100_000,
        value=2000 if dataset == "dogs-vs-cats" else 5000, step=100, key=f"transfer_train_size_{dataset}",
        help="Fewer labelled images make transfer's advantage over scratch larger."))
    valid_size = int(st.number_input("Validation images", min_value=10, max_value=20_000,
                                     value=500 if dataset == "dogs-vs-cats" else 1000, step=50,
                                     key=f"transfer_valid_size_{dataset}"))

augment = st.checkbox("Augmentation (rotation + flip for photos; rotation/shift/zoom for signs)",
                      value=True, key="transfer_augment")
bottleneck = st.checkbox(
    "Bottleneck cache: run the frozen base once and train the head on cached features",
    value=True, key="transfer_bottleneck", disabled=strategy == "scratch",
    help="Scratch trains every layer, so nothing can be cached.")
copies = 1
if augment and bottleneck and strategy != "scratch":
    copies = int(st.number_input(
        "Augmented copies precomputed (K)", min_value=1, max_value=family.MAX_BOTTLENECK_COPIES, value=5,
        key="transfer_copies"))
    st.caption(f"With augmentation on, the cache holds **{copies} augmented copies** of every training "
               f"image (computed once, {copies} passes of the base); epoch *e* trains the head on "
               f"copy *e mod {copies}*. Fine-tuning's second stage runs the full network again.")

# --- the weights --------------------------------------------------------------------------------
weights = "none"
problem = None
if strategy != "scratch":
    if weights_source == BACKBONE_SOURCES[0]:
        weights = "imagenet"
        transfer_ui.imagenet_weights_status(model)
        transfer_ui.zero_shot_baseline(model, dataset, valid_size)
    elif weights_source == BACKBONE_SOURCES[1]:
        path_text = st.text_input("Weights file (.h5 or .weights.h5, no top)", key=f"transfer_weights_path_{model}",
                                  placeholder="/path/to/mobilenet_v2_..._no_top.h5")
        weights = path_text.strip()
        if not weights:
            problem = f"Give the path of a {model} no-top weights file."
        else:
            try:
                weights = str(serving.check_server_path(weights, common.server_address()))
            except ValueError as error:
                problem = str(error)
    else:
        finished = [summary for summary in transfer_ui.run_summaries()
                    if summary.state == runs.COMPLETED and (summary.path / runs.MODEL_FILE).exists()]
        if not finished:
            problem = "No finished run yet: train one (e.g. on the Train LeNet-5 page) first."
        else:
            labels = {summary.run_id: summary.label for summary in finished}
            source_id = st.selectbox("Source run", list(labels), key="transfer_source_run",
                                     format_func=labels.get,
                                     help="A run of the same backbone lends its base's weights; any "
                                          "other run (e.g. LeNet) lends its layers to a copy of its "
                                          "own architecture.")
            weights = f"run:{source_id}"

with st.expander("How transferable is each source to this dataset? (measured before training)"):
    transferability_panel(dataset, key_prefix="transfer")

config = {"model": model, "strategy": strategy, "dataset": dataset, "weights": weights,
          "image_size": image_size, "epochs": epochs, "batch_size": batch_size,
          "learning_rate": float(learning_rate), "train_size": train_size, "valid_size": valid_size,
          "augmentation": None if augment else {}, "bottleneck": bool(bottleneck),
          "bottleneck_copies": copies}
if fine_tune_epochs is not None:
    config.update(fine_tune_epochs=fine_tune_epochs, fine_tune_blocks=fine_tune_blocks)
if weights.startswith("run:"):
    source_summary = runs.summarize_run(runs.run_path(weights[4:]))
    if families.transfer_family_for_source(model, source_summary.model) == families.LENET_TRANSFER_MODEL:
        config = {"model": families.LENET_TRANSFER_MODEL, "strategy": strategy, "dataset": dataset,
                  "source_run": weights[4:], "epochs": epochs, "batch_size": batch_size,
                  "train_size": train_size, "valid_size": valid_size}
        st.caption(f"Transfers the layers of **{source_summary.label}** into a copy of its "
                   "architecture with a new classifier; image size and preprocessing follow the source run.")

start_column, sweep_column = st.columns(2)
with start_column:
    if st.button("Start training", key="transfer_start", type="primary", icon=":material/play_arrow:",
                 disabled=problem is not None):
        try:
            st.session_state["transfer_last_run_id"] = jobs.submit(config)
            st.toast(f"Queued {st.session_state['transfer_last_run_id']}")
        except ValueError as error:
            st.error(f"Cannot start: {error}", icon=":material/error:")
    if problem:
        st.warning(problem, icon=":material/warning:")
with sweep_column:
    sizes = st.multiselect("Sweep sizes (train_size)", [50, 100, 250, 500, 1000, 2000, 5000],
                           default=list(experiments.SWEEP_SIZES), key="transfer_sweep_sizes")
    if st.button("Sweep: scratch + transfer for each size", key="transfer_sweep",
                 icon=":material/stacked_line_chart:",
                 disabled=problem is not None or not sizes or config["model"] == "lenet5-transfer"):
        try:
            ids = experiments.submit_sweep(config, sizes)
            st.session_state["transfer_last_sweep"] = ids
            st.session_state["transfer_last_run_id"] = ids[0]
            st.toast(f"Queued {len(ids)} runs; they train one after another")
        except ValueError as error:
            st.error(f"Cannot start the sweep: {error}", icon=":material/error:")
    st.caption("The jobs queue runs them one after another; the Compare page draws accuracy "
               "against train_size for scratch and transfer.")

if st.session_state["transfer_last_run_id"]:
    st.subheader("2 · Live run")
    transfer_ui.live_run_panel(st.session_state["transfer_last_run_id"])
    if st.session_state["transfer_last_sweep"]:
        st.caption(f"Sweep: {len(st.session_state['transfer_last_sweep'])} runs queued — follow "
                   "them on the Runs page.")

with st.expander("The same from a terminal"):
    st.code(
        "python -m core.weights get mobilenetv2 --from mobilenet_v2_1.0_224_imagenet_no_top.weights.h5\n"
        "python -m core.train --model mobilenetv2 --strategy feature-extraction --dataset dogs-vs-cats "
        "--weights imagenet\n"
        "python -m core.train --model mobilenetv2 --strategy fine-tune --dataset dogs-vs-cats "
        "--weights imagenet --set fine_tune_blocks=3\n"
        "python -m core.train --model vgg16 --strategy feature-extraction --dataset dogs-vs-cats "
        "--weights imagenet --image-size 224 --train-size 2000 --valid-size 500 --epochs 100\n"
        "python -m core.train --model vgg16 --strategy scratch --dataset dogs-vs-cats\n"
        "python bench/bench_bottleneck.py   # per-epoch cost: base every epoch vs cached features",
        language="bash")

# --- few-shot GTSRB --------------------------------------------------------------------------------
st.subheader("3 · Offline experiment: few-shot GTSRB")
st.markdown(
    "A small-scale reproduction of **Yosinski et al. (2014), _How transferable are features in "
    "deep neural networks?_** that needs no download. A LeNet-sized network (the *plus* preset) "
    "learns a **source** task — the app's synthetic signs, or real GTSRB classes 0–20 — and its "
    "first *n* layers are copied into a network for the **target**: real GTSRB with only *k* "
    "labelled photos per class (all 43 classes, or classes 21–42 that the source never saw). A "
    "twin network with the same architecture, data and epochs starts from random weights.\n\n"
    "The paper's two copies: **frozen** (*AnB*: copied layers fixed, only the rest learns) and "
    "**fine-tuned** (*AnB+*: here the new layers first learn on frozen copies for a third of the "
    "epochs, then everything trains at 0.3× the learning rate). It "
    "found that general, early features transfer well, that freezing many layers of a *different* "
    "task hurts (co-adapted layers are split, and late features are task-specific), and that "
    "fine-tuned transferred features beat training from scratch even with plenty of data. With "
    "k = 10 the gap is largest: scratch has 10 examples per class to learn every filter from."
)
few_left, few_right = st.columns(2)
with few_left:
    source = st.radio("Source task", experiments.SOURCES, key="transfer_fewshot_source",
                      format_func=lambda name: {"synthetic-signs": "synthetic signs → GTSRB (43 classes)",
                                                "gtsrb-half": "GTSRB 0–20 → GTSRB 21–42"}[name])
    k = st.select_slider("Labelled images per class (k)", experiments.LABELS_PER_CLASS_CHOICES,
                         value=10, key="transfer_fewshot_k")
with few_right:
    freeze = st.toggle("Freeze the copied layers (AnB) instead of fine-tuning them (AnB+)",
                       value=False, key="transfer_fewshot_freeze")
    layers = int(st.number_input("Copy the first n weighted layers (0 = the default: every hidden "
                                 "layer from synthetic signs, every convolution from GTSRB half)",
                                 min_value=0, max_value=10, value=0, key="transfer_fewshot_layers"))
    reuse = experiments.find_source_run(source, include_active=True)
    st.caption(f"Source run: **{reuse.name}** (reused)" if reuse else
               "No source run yet: one is queued first (about 5–15 minutes on a laptop CPU).")
if st.button("Run the few-shot experiment", key="transfer_fewshot_start", icon=":material/science:"):
    try:
        queued = experiments.submit_few_shot(source, k, transfer_layers=layers or None, freeze=freeze)
        st.session_state["transfer_last_experiment"] = queued
        st.session_state["transfer_last_run_id"] = queued["transfer"]
        st.toast(f"Queued scratch {queued['scratch']} and transfer {queued['transfer']}")
    except ValueError as error:
        st.error(f"Cannot start: {error}", icon=":material/error:")
st.code(f"python -m core.experiments few-shot --source {source} --labels-per-class {k}"
        + (" --freeze" if freeze else "") + (f" --transfer-layers {layers}" if layers else ""),
        language="bash")
results = experiments.few_shot_results(transfer_ui.run_summaries())
if results:
    table = pd.DataFrame(results)[["source", "labels_per_class", "strategy", "scratch_accuracy",
                                   "transfer_accuracy", "gain_points", "split", "experiment_id",
                                   "scratch_run", "transfer_run"]]
    for column in ("scratch_accuracy", "transfer_accuracy"):
        table[column] = table[column].map(lambda value: None if value is None else 100.0 * value)
    st.dataframe(table, key="transfer_fewshot_table", hide_index=True, column_config={
        "scratch_accuracy": st.column_config.NumberColumn("scratch %", format="%.1f"),
        "transfer_accuracy": st.column_config.NumberColumn("transfer %", format="%.1f"),
        "gain_points": st.column_config.NumberColumn("gain (points)", format="%+.1f"),
    })
