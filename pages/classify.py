"""Classify images: upload, webcam, samples or "images from the internet" against a finished run."""

import streamlit as st

from core import imaging
from core.charts.classify import best_runs_by_dataset, finished_runs, run_label
from ui import classify as classify_ui
from ui import common

MODES = ("Upload", "Webcam snapshot", "Samples", "Images from the internet", "Live webcam")

common.page_header(
    "Classify images",
    "Pick a finished run and show it pictures: each one is preprocessed exactly as in training, "
    "then you see what the model sees, its top-5 classes, the latency and, for convolutional "
    "models, a Grad-CAM heatmap of where it looked.",
)
common.init_session_state(classify_ui.SESSION_DEFAULTS)

summaries = finished_runs()
if not summaries:
    classify_ui.quick_train_panel()
    st.stop()

best = best_runs_by_dataset(summaries)
datasets_with_runs = list(best)
classify_ui.apply_run_query_parameter(summaries)
dataset = st.selectbox("Dataset", datasets_with_runs, key="classify_dataset",
                       help="Datasets that have at least one finished run.")
candidates = [summary for summary in summaries if summary.dataset == dataset]
candidates.sort(key=lambda summary: summary.run_id != best[dataset].run_id)  # best first
by_id = {summary.run_id: summary for summary in candidates}
run_id = st.selectbox("Run", list(by_id), key=f"classify_run_{dataset}",
                      format_func=lambda value: ("★ " if value == best[dataset].run_id else "")
                      + run_label(by_id[value]),
                      help="The best run of the dataset (test accuracy, else validation) is "
                           "first and chosen by default.")
summary = by_id[run_id]
predictor, problem = classify_ui.predictor_for(summary)
if predictor is None:
    st.error(problem, icon=":material/error:")
    st.stop()
explainer, gradcam_note = classify_ui.load_gradcam(str(summary.path),
                                                   classify_ui.model_mtime(summary.path))
st.caption(classify_ui.describe_predictor(predictor))

options = st.columns([3, 1])
mode = options[0].radio("Input", MODES, key="classify_mode", horizontal=True)
show_gradcam = options[1].toggle("Grad-CAM", value=explainer is not None,
                                 disabled=explainer is None, key="classify_gradcam",
                                 help=gradcam_note or "Heatmap of the last convolution layer.")
try:
    examples = classify_ui.class_examples(dataset)
except Exception:  # noqa: BLE001 - examples are a bonus; a dataset problem must not stop the page
    classify_ui.LOGGER.exception("class examples failed")
    examples = {}

if mode == "Upload":
    files = st.file_uploader("Images to classify", type=list(imaging.UPLOAD_EXTENSIONS),
                             accept_multiple_files=True, key="classify_upload",
                             help=classify_ui.upload_caption())
    st.caption(classify_ui.upload_caption())
    for index, (name, image) in enumerate(classify_ui.decode_uploads(files)):
        classify_ui.show_result(predictor, explainer, name, image, key=f"classify_upload_{index}",
                                examples=examples, show_gradcam=show_gradcam)
elif mode == "Webcam snapshot":
    shot = st.camera_input("Take a picture", key="classify_camera",
                           help="The browser asks for the camera; it works on localhost or https.")
    if shot is not None:
        for name, image in classify_ui.decode_uploads([shot]):
            classify_ui.show_result(predictor, explainer, "webcam snapshot", image,
                                    key="classify_camera_result", examples=examples,
                                    show_gradcam=show_gradcam)
elif mode == "Samples":
    try:
        samples = classify_ui.dataset_samples(dataset)
    except Exception as error:  # noqa: BLE001
        classify_ui.LOGGER.exception("samples failed")
        st.error(f"Could not read sample images of {dataset}: {error}")
        samples = {"images": []}
    if not samples["images"]:
        st.info(f"The {dataset} dataset is not installed here, so there are no samples; "
                "install it on the Datasets page or upload your own pictures.")
    else:
        choice = st.selectbox(
            f"Sample image ({samples['source']})", range(len(samples["images"])),
            key="classify_sample",
            format_func=lambda index: f"{samples['files'][index]} (true: {samples['labels'][index]})")
        classify_ui.show_result(predictor, explainer, samples["files"][choice],
                                samples["images"][choice], key="classify_sample_result",
                                true_label=samples["labels"][choice], examples=examples,
                                show_gradcam=show_gradcam)
elif mode == "Images from the internet":
    classify_ui.internet_mode(predictor)
else:
    classify_ui.live_mode(predictor)
