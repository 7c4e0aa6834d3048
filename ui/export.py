"""Runs page panel: portable exports of a finished run, each with size, latency and agreement.

``export_panel(run_dir, key_prefix)`` lets a student prepare a ``.keras`` (standard layers
only), a SavedModel (zipped) or a TFLite file (float32, float16 or int8) of a run. Preparing
exports the model with ``core.export`` and measures it on the run's validation images; the
download button then serves the file from the run's ``export/`` folder.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from core import export, runs

# Label shown -> (format, quantize).
CHOICES = {
    "Keras (.keras, standard layers only)": ("keras", "none"),
    "TensorFlow SavedModel (.zip)": ("savedmodel", "none"),
    "TFLite float32 (.tflite)": ("tflite", "none"),
    "TFLite float16 (.tflite)": ("tflite", "float16"),
    "TFLite int8 (.tflite)": ("tflite", "int8"),
}
INTRO = (
    "Use this run's model outside the app: the Keras file loads with a bare "
    "`keras.saving.load_model(path)` (training-only layers removed, preprocessing as standard "
    "layers); TFLite runs on phones. Each export takes images as the run preprocesses them "
    "(the Classify page shows them). Agreement = share of validation images whose top class "
    "equals the run's."
)


@st.cache_data(show_spinner=False, max_entries=32)
def _measure(run_dir: str, format: str, quantize: str, model_mtime: float) -> dict:
    """Exports and measures one format; cached per run, format and model file version."""
    measurement = export.measure_export(run_dir, format, quantize=quantize)
    return {"path": str(measurement.path), "size_bytes": measurement.size_bytes,
            "latency_ms": measurement.latency_ms, "agreement": measurement.agreement,
            "num_images": measurement.num_images}


def _model_mtime(run_dir: Path) -> float:
    try:
        return (run_dir / runs.MODEL_FILE).stat().st_mtime
    except OSError:
        return 0.0


def _size_text(size_bytes: int) -> str:
    return f"{size_bytes / 1e6:.1f} MB" if size_bytes >= 100_000 else f"{size_bytes / 1e3:.0f} kB"


def export_panel(run_dir, key_prefix: str) -> None:
    """An expander to prepare and download portable exports of one finished run.

    Args:
        run_dir: the run folder; nothing is shown unless the run completed with ``model.keras``.
        key_prefix: prefix of every widget key (unique per page).
    """
    run_dir = Path(run_dir)
    mtime = _model_mtime(run_dir)
    try:
        completed = runs.read_status(run_dir).get("state") == runs.COMPLETED
    except runs.RunError:
        completed = False
    if not mtime or not completed:
        return
    prepared_key = f"{key_prefix}_export_prepared"
    prepared: dict = st.session_state.setdefault(prepared_key, {})
    with st.expander("Export for use outside the app", icon=":material/ios_share:"):
        st.caption(INTRO)
        label = st.selectbox("Format", list(CHOICES), key=f"{key_prefix}_export_format")
        format, quantize = CHOICES[label]
        if st.button("Prepare export", key=f"{key_prefix}_export_prepare",
                     icon=":material/build:"):
            with st.spinner(f"Exporting and measuring on validation images: {label}"):
                try:
                    prepared[(str(run_dir), label)] = _measure(str(run_dir), format, quantize, mtime)
                except (ValueError, OSError) as error:
                    st.error(f"Export failed: {error}")
        for index, (choice, result) in enumerate(
                (choice, result) for (folder, choice), result in prepared.items()
                if folder == str(run_dir)):
            path = Path(result["path"])
            if not path.is_file():
                continue
            columns = st.columns([3, 2])
            columns[0].markdown(
                f"**{choice}** · {_size_text(result['size_bytes'])} · "
                f"{result['latency_ms']:.1f} ms per image · "
                f"agreement {result['agreement']:.1%} on {result['num_images']} validation images")
            columns[1].download_button(
                "Download", data=lambda path=path: path.read_bytes(), file_name=path.name,
                mime="application/octet-stream", key=f"{key_prefix}_export_download_{index}",
                icon=":material/download:", on_click="ignore")
