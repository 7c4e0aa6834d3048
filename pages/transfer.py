"""Transfer learning page: VGG16 on Dogs vs Cats (three strategies), sweeps, few-shot GTSRB."""

import pandas as pd
import streamlit as st

from core import experiments, jobs, runs
from core.datasets import registry
from core.models import backbones
from core.training import transfer_family as family
from ui import common
from ui import transfer as transfer_ui

SESSION_DEFAULTS = {"transfer_last_run_id": None, "transfer_last_sweep": [],
                    "transfer_last_experiment": None}
BACKBONE_SOURCES = ("ImageNet (Keras download)", "Local weights file", "Finished run")
STRATEGY_HELP = {
    "feature-extraction": "Freeze the pretrained base, train only the new head (Flatten → Dense "
                          "256 → Dropout 0.5 → softmax). Best with little data similar to ImageNet.",
    "fine-tune": "Feature extraction first, then unfreeze VGG16's last block (block5) and keep "
                 "training at a 10× lower learning rate. Epochs keep counting across both stages.",
    "scratch": "The same network with random weights, all trainable, same data and epochs: the "
               "control every transfer result is measured against.",
}
LEARNING_RATES = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2)
NATURAL_SIZE = {"dogs-vs-cats": 224, "gtsrb": 32, "synthetic-signs": 32}

common.page_header(
    "Transfer learning",
    "Reuse what a network learnt on one task for another. The study's second experiment: VGG16 "
    "pretrained on ImageNet, a new head for **Dogs vs Cats**, trained three ways — feature "
    "extraction, fine-tuning and, as the control, from scratch. Every run is a job with live "
    "curves; compare them on the **Compare runs** page.",
)
common.init_session_state()
common.init_session_state(SESSION_DEFAULTS)

# --- what to train ---------------------------------------------------------------------------------
st.subheader("1 · Data, backbone and strategy")
left, right = st.columns(2)
with left:
    dataset = st.selectbox("Dataset", family.DATASETS, key="transfer_dataset",
                           format_func=lambda name: registry.get_info(name).title)
    state = registry.status(dataset)
    if state != "ready":
        st.warning(f"{registry.get_info(dataset).title} is {state} here: install it on the "
                   "**Datasets** page first (training fails without it).", icon=":material/warning:")
    strategy = st.radio("Strategy", family.STRATEGIES, key="transfer_strategy", horizontal=True,
                        help="The study's three implementation strategies.")
    st.caption(STRATEGY_HELP[strategy])
with right:
    model = st.selectbox("Backbone network", family.BACKBONE_MODELS, key="transfer_model",
                         format_func=lambda name: {"vgg16": "VGG16 (the study)",
                                                   "mobilenetv2": "MobileNetV2 (lighter, for CPU labs)"}[name])
    weights_source = st.radio("Pretrained weights", BACKBONE_SOURCES, key="transfer_weights_source",
                              disabled=strategy == "scratch",
                              help="Scratch always starts from random weights.")

image_size_default = NATURAL_SIZE[dataset]
settings_left, settings_mid, settings_right = st.columns(3)
with settings_left:
    image_size = int(st.number_input("Image size (px)", min_value=32, max_value=512,
                                     value=image_size_default, step=16, key=f"transfer_image_size_{dataset}",
                                     help="The study: 224 × 224 × 3. Smaller is much faster on a CPU."))
    epochs = int(st.number_input("Epochs (whole budget)", min_value=1, max_value=500, value=100,
                                 key="transfer_epochs", help="The study: 100."))
    fine_tune_epochs = None
    if strategy == "fine-tune":
        fine_tune_epochs = int(st.number_input(
            "of which fine-tuning block5", min_value=1, max_value=epochs, value=max(1, epochs // 2),
            key="transfer_fine_tune_epochs"))
with settings_mid:
    batch_size = int(st.number_input("Batch size", min_value=1, max_value=1024, value=100,
                                     key="transfer_batch_size", help="The study: 100."))
    learning_rate = st.select_slider("Learning rate (SGD, momentum 0.9)", LEARNING_RATES, value=1e-4,
                                     key="transfer_learning_rate",
                                     format_func=lambda value: f"{value:g}",
                                     help="The study: 1e-4; fine-tuning uses a tenth of it.")
with settings_right:
    train_size = int(st.number_input(
        "Training images (train_size)", min_value=10, max_value=100_000,
        value=2000 if dataset == "dogs-vs-cats" else 5000, step=100, key=f"transfer_train_size_{dataset}",
        help="Fewer labelled images make transfer's advantage over scratch larger."))
    valid_size = int(st.number_input("Validation images", min_value=10, max_value=20_000,
                                     value=500 if dataset == "dogs-vs-cats" else 1000, step=50,
                                     key=f"transfer_valid_size_{dataset}"))

augment = st.checkbox("Augmentation (rotation + flip for Dogs vs Cats; rotation/shift/zoom for signs)",
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
        transfer_ui.imagenet_weights_panel(model, image_size)
        st.caption(f"No internet on this machine? {backbones.offline_hint(model)}")
    elif weights_source == BACKBONE_SOURCES[1]:
        found = backbones.discover_local_weights(model)
        if found:
            st.caption("Found under the data root: " + ", ".join(f"`{path}`" for path in found))
        path_text = st.text_input("Weights file (.h5 or .weights.h5)",
                                  value=str(found[0]) if found else "", key=f"transfer_weights_path_{model}",
                                  placeholder=str(backbones.local_weights_dir() / backbones.LOCAL_WEIGHTS_NAMES[model][0]))
        if not path_text.strip():
            problem = (f"Give the path of a {model} no-top weights file, or place one at "
                       f"{backbones.local_weights_dir() / backbones.LOCAL_WEIGHTS_NAMES[model][0]}.")
        weights = path_text.strip()
    else:
        finished = [summary for summary in transfer_ui.run_summaries()
                    if summary.state == runs.COMPLETED and (summary.path / runs.MODEL_FILE).exists()]
        if not finished:
            problem = "No finished run yet: train one (e.g. on the Train LeNet-5 page) first."
        else:
            labels = {summary.run_id: summary.label for summary in finished}
            source_id = st.selectbox("Source run", list(labels), key="transfer_source_run",
                                     format_func=labels.get,
                                     help="A VGG16 run lends its block1..5 weights; any other run "
                                          "(e.g. LeNet) lends its layers to a copy of its own architecture.")
            weights = f"run:{source_id}"

config = {"model": model, "strategy": strategy, "dataset": dataset, "weights": weights,
          "image_size": image_size, "epochs": epochs, "batch_size": batch_size,
          "learning_rate": float(learning_rate), "train_size": train_size, "valid_size": valid_size,
          "augmentation": None if augment else {}, "bottleneck": bool(bottleneck),
          "bottleneck_copies": copies}
if fine_tune_epochs is not None:
    config["fine_tune_epochs"] = fine_tune_epochs
if weights.startswith("run:"):
    source_summary = runs.summarize_run(runs.run_path(weights[4:]))
    if source_summary.model != "vgg16" or model != "vgg16":
        # Any non-VGG run: copy its layers into its own architecture (the LeNet transfer family).
        config = {"model": "lenet5-transfer", "strategy": strategy, "dataset": dataset,
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
        "python -m core.train --model vgg16 --strategy feature-extraction --dataset dogs-vs-cats \\\n"
        "    --weights imagenet --image-size 224 --train-size 2000 --valid-size 500 --epochs 100\n"
        "python -m core.train --model vgg16 --strategy fine-tune --dataset dogs-vs-cats "
        "--weights data/weights/vgg16_notop.h5\n"
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
    layers = int(st.number_input("Copy the first n weighted layers (0 = every convolution)",
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
