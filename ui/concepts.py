"""The Concepts page's sections: output size, layer stack (with LeNet-5's C3 table), receptive
field, convolution playground and pooling against strided convolution.

Each ``*_section`` function draws one tab: widgets with explicit keys and defaults in
``DEFAULTS`` (session state) → ``core.concepts`` → render. ``pages/concepts.py`` only lays out
the tabs.
"""

import numpy as np
import pandas as pd
import streamlit as st

from core import concepts
from core.charts import concepts as charts

PRESET_DEFAULTS = {
    "LeNet-5": {"num_classes": concepts.LENET5_NUM_CLASSES, "input_shape": concepts.LENET5_INPUT_SHAPE},
    "VGG16": {"num_classes": concepts.VGG16_NUM_CLASSES, "input_shape": concepts.VGG16_INPUT_SHAPE},
}
KERNEL_CHOICES = (*concepts.KERNELS, "custom")
PLAYGROUND_PADDINGS = ("zeros (P)", "same (Keras)")

DEFAULTS = {
    # a. output-size calculator
    "concepts_two_axes": False,
    "concepts_height": 32,
    "concepts_width": 32,
    "concepts_kernel": 5,
    "concepts_stride": 1,
    "concepts_padding": 0,
    "concepts_dilation": 1,
    "concepts_pool_mode": "max",
    "concepts_pool_size": 2,
    "concepts_pool_stride": 2,
    # b. layer stack
    "concepts_preset": "LeNet-5",
    "concepts_num_classes": concepts.LENET5_NUM_CLASSES,
    "concepts_input_height": concepts.LENET5_INPUT_SHAPE[0],
    "concepts_input_width": concepts.LENET5_INPUT_SHAPE[1],
    "concepts_input_channels": concepts.LENET5_INPUT_SHAPE[2],
    "concepts_partial_c3": False,
    # c. receptive field
    "concepts_rf_layer": None,
    "concepts_rf_row": 0,
    "concepts_rf_col": 0,
    # d. playground
    "concepts_image_source": "sample",
    "concepts_kernel_name": "edge",
    "concepts_custom_size": 3,
    "concepts_play_stride": 1,
    "concepts_play_padding_mode": PLAYGROUND_PADDINGS[0],
    "concepts_play_padding": 1,
    "concepts_play_pool_size": 2,
    "concepts_play_pool_stride": 2,
    # e. strided convolution instead of pooling (Springenberg et al. 2015)
    "concepts_strided_side": concepts.strided.DEFAULT_INPUT_SHAPE[0],
    "concepts_strided_channels": concepts.strided.DEFAULT_INPUT_SHAPE[2],
    "concepts_strided_filters": concepts.strided.DEFAULT_FILTERS,
    "concepts_strided_kernel": concepts.strided.DEFAULT_KERNEL,
    "concepts_strided_pool_size": concepts.strided.DEFAULT_POOL_SIZE,
    "concepts_strided_pool_stride": concepts.strided.DEFAULT_POOL_STRIDE,
}


def _apply_preset_defaults() -> None:
    """Preset switch: reset the class count and input shape to the preset's own."""
    defaults = PRESET_DEFAULTS[st.session_state["concepts_preset"]]
    st.session_state["concepts_num_classes"] = defaults["num_classes"]
    (st.session_state["concepts_input_height"], st.session_state["concepts_input_width"],
     st.session_state["concepts_input_channels"]) = defaults["input_shape"]
    st.session_state["concepts_rf_layer"] = None


def _reset_editor(key: str) -> None:
    st.session_state.pop(key, None)


def _shape_text(shape) -> str:
    return "×".join(str(value) for value in shape)


def _clamp(key: str, low: int, high: int) -> None:
    """Keeps a number input's session value inside a range that depends on other widgets."""
    st.session_state[key] = min(max(int(st.session_state[key]), low), high)


# --------------------------------------------------------------------------------------------
# a. Output-size calculator


def output_size_section() -> None:
    st.markdown(
        "Along each axis a convolution with input **W**, kernel **F**, stride **S**, zero-padding "
        "**P** and dilation **d** (dilated kernel F′ = d(F − 1) + 1) gives "
        "**(W − F′ + 2P) / S + 1** outputs, rounded down by every framework."
    )
    two_axes = st.toggle("Different height and width (H×W)", key="concepts_two_axes")
    columns = st.columns(6 if two_axes else 5)
    if two_axes:
        columns[0].number_input("H (input height)", min_value=1, max_value=4096, step=1,
                                key="concepts_height")
    offset = 1 if two_axes else 0
    columns[offset].number_input("W (input width)", min_value=1, max_value=4096, step=1,
                                 key="concepts_width")
    columns[offset + 1].number_input("F (kernel size)", min_value=1, max_value=64, step=1,
                                     key="concepts_kernel")
    columns[offset + 2].number_input("S (stride)", min_value=1, max_value=32, step=1,
                                     key="concepts_stride")
    columns[offset + 3].number_input("P (zero-padding)", min_value=0, max_value=64, step=1,
                                     key="concepts_padding")
    columns[offset + 4].number_input("d (dilation)", min_value=1, max_value=16, step=1,
                                     key="concepts_dilation")
    state = st.session_state
    sizes = {"width": state["concepts_width"]}
    if two_axes:
        sizes = {"height": state["concepts_height"], "width": state["concepts_width"]}
    kernel, stride = state["concepts_kernel"], state["concepts_stride"]
    padding, dilation = state["concepts_padding"], state["concepts_dilation"]
    try:
        reports = {axis: concepts.output_size_report(size, kernel, stride, padding, dilation)
                   for axis, size in sizes.items()}
    except ValueError as error:
        st.error(str(error))
        return
    outputs = [report["output_size"] for report in reports.values()]
    st.metric("Output size", "×".join(str(value) for value in outputs))
    for axis, report in reports.items():
        if len(reports) > 1:
            st.markdown(f"**{axis.capitalize()}**")
        st.latex(report["formula_latex"])
        if not report["divisible"]:
            st.warning(
                f"{axis.capitalize()}: W − F′ + 2P = {report['numerator']} is not divisible by "
                f"S = {stride}, so frameworks floor {report['numerator']}/{stride} = "
                f"{report['numerator'] / stride:g} to {report['numerator'] // stride}. The last "
                f"{report['uncovered']} column(s) of the padded input are never covered by a "
                f"window; {report['uncovered_input']} of them are real input columns, the rest "
                "is padding.",
                icon=":material/warning:",
            )
        else:
            st.caption(f"{axis.capitalize()}: every column is covered "
                       f"(W − F′ + 2P = {report['numerator']} is a multiple of S = {stride}).")
    first = next(iter(reports.values()))
    st.info(
        f"Teaching note: the source slide prints **(W − F + 2P)/(S + 1)**, which is wrong. With "
        f"these numbers it would give ({first['size']} − {kernel} + 2·{padding})/({stride} + 1) = "
        f"**{first['misprint']:.4g}** instead of the correct **{first['output_size']}**.",
        icon=":material/school:",
    )

    _keras_padding_table(sizes, kernel, stride, dilation)
    pooling_part(reports, outputs)


def _keras_padding_table(sizes: dict, kernel: int, stride: int, dilation: int) -> None:
    """Keras' ``valid`` and ``same`` output sizes and the padding they add, per axis."""
    st.markdown("**Keras presets** (`padding=\"valid\"` and `padding=\"same\"`, as Keras computes them)")
    rows = []
    for mode, rule in (("valid", "⌊(W − F′)/S⌋ + 1"), ("same", "⌈W/S⌉")):
        row = {"padding": mode, "rule": rule}
        for axis, size in sizes.items():
            try:
                output = concepts.keras_output_size(size, kernel, stride, mode, dilation)
                before, after = concepts.keras_padding_amounts(size, kernel, stride, mode, dilation)
                row[f"{axis} output"] = str(output)
                row[f"{axis} padding added (before, after)"] = f"{before}, {after}"
            except ValueError:
                row[f"{axis} output"] = "kernel larger than input"
                row[f"{axis} padding added (before, after)"] = "-"
        rows.append(row)
    st.dataframe(pd.DataFrame(rows), hide_index=True, key="concepts_keras_table")


def pooling_part(reports: dict, outputs: list) -> None:
    """Pooling of the calculator's feature map: window, stride, pooled size, dropped columns."""
    state = st.session_state
    st.subheader("Pooling")
    st.markdown("Pooling slides an F×F window with stride S over the feature map above "
                f"({'×'.join(str(value) for value in outputs)}); it has no weights and no padding "
                "by default, so its size is (W − F)/S + 1.")
    pool_columns = st.columns(3)
    pool_columns[0].selectbox("Pooling", concepts.POOL_MODES, key="concepts_pool_mode",
                              format_func=lambda mode: f"{mode} pooling")
    pool_columns[1].number_input("Pool size", min_value=1, max_value=16, step=1,
                                 key="concepts_pool_size")
    pool_columns[2].number_input("Pool stride", min_value=1, max_value=16, step=1,
                                 key="concepts_pool_stride")
    pool_size, pool_stride = state["concepts_pool_size"], state["concepts_pool_stride"]
    try:
        pooled = {axis: concepts.output_size_report(output, pool_size, pool_stride, 0)
                  for axis, output in zip(reports, outputs)}
    except ValueError as error:
        st.error(str(error))
        return
    st.metric(f"Pooled size ({state['concepts_pool_mode']})",
              "×".join(str(report["output_size"]) for report in pooled.values()))
    for axis, report in pooled.items():
        st.latex(report["formula_latex"])
        if not report["divisible"]:
            st.warning(f"{axis.capitalize()}: the last {report['uncovered_input']} column(s) of the "
                       "feature map fall outside every pooling window and are dropped.",
                       icon=":material/warning:")
    same = [concepts.pooling_output_size(output, pool_size, pool_stride, "same") for output in outputs]
    st.caption(f"Keras `padding=\"same\"` would give {'×'.join(map(str, same))} (⌈W/S⌉): padded cells "
               "never win a max and are left out of an average.")


# --------------------------------------------------------------------------------------------
# b. Layer stack


def layer_stack_section() -> tuple[list | None, list | None, tuple]:
    """Renders the editable stack; returns ``(layers, analysis, input_shape)`` (None on error)."""
    columns = st.columns([2, 1, 1, 1, 1])
    columns[0].selectbox("Preset", concepts.PRESET_NAMES, key="concepts_preset",
                         on_change=_apply_preset_defaults)
    columns[1].number_input("Classes (output units)", min_value=1, max_value=100_000, step=1,
                            key="concepts_num_classes",
                            help="10 digits in LeCun 1998, 43 for GTSRB, 1000 for ImageNet")
    columns[2].number_input("Input height", min_value=1, max_value=1024, step=1,
                            key="concepts_input_height")
    columns[3].number_input("Input width", min_value=1, max_value=1024, step=1,
                            key="concepts_input_width")
    columns[4].number_input("Channels", min_value=1, max_value=64, step=1,
                            key="concepts_input_channels")
    state = st.session_state
    preset = state["concepts_preset"]
    input_shape = (state["concepts_input_height"], state["concepts_input_width"],
                   state["concepts_input_channels"])
    layers, _ = concepts.preset_stack(preset, state["concepts_num_classes"])
    editor_key = f"concepts_stack_editor_{preset}"
    st.caption("Edit any cell, add or delete rows. Types: conv, max_pool, avg_pool, dense "
               "(a dense layer after a spatial one flattens first). Empty cells take defaults.")
    rows = pd.DataFrame(concepts.stack_table(layers), columns=list(concepts.STACK_COLUMNS))
    for column in ("filters_or_units", "kernel", "stride", "padding", "dilation"):
        rows[column] = rows[column].astype("Int64")
    edited = st.data_editor(
        rows,
        key=editor_key,
        num_rows="dynamic",
        hide_index=True,
        width="stretch",
        column_config={
            "type": st.column_config.SelectboxColumn("type", options=concepts.LAYER_TYPES),
            "activation": st.column_config.SelectboxColumn("activation", options=concepts.ACTIVATIONS),
            "filters_or_units": st.column_config.NumberColumn("filters / units", min_value=1, step=1),
            "kernel": st.column_config.NumberColumn("kernel", min_value=1, step=1),
            "stride": st.column_config.NumberColumn("stride", min_value=1, step=1),
            "padding": st.column_config.NumberColumn("padding", min_value=0, step=1),
            "dilation": st.column_config.NumberColumn("dilation", min_value=1, step=1),
        },
    )
    st.button("Reset the table to the preset", key="concepts_reset_stack",
              on_click=_reset_editor, args=(editor_key,))
    partial = preset == "LeNet-5" and st.toggle(
        "C3: LeCun's partial connection table (1998, table I)", key="concepts_partial_c3",
        help="In the paper each C3 map reads only 3, 4 or 6 of the 6 S2 maps (see the table below).")
    try:
        layers = concepts.parse_stack_table(edited.to_dict("records"))
        if partial:
            layers = concepts.use_partial_c3(layers)
        analysis = concepts.analyze_stack(layers, input_shape)
    except ValueError as error:
        st.error(str(error))
        return None, None, input_shape
    totals = concepts.stack_totals(analysis)
    metric_columns = st.columns(3)
    metric_columns[0].metric("Parameters", f"{totals['params']:,}")
    metric_columns[1].metric("Multiply-accumulates", f"{totals['macs']:,}",
                             help="One multiply-accumulate per weight use; pooling counts 0.")
    metric_columns[2].metric("Output shape", _shape_text(totals["output_shape"]))
    table = pd.DataFrame({
        "layer": [row["name"] for row in analysis],
        "type": [row["type"] for row in analysis],
        "output shape": [_shape_text(row["output_shape"]) for row in analysis],
        "parameters": [row["params"] for row in analysis],
        "multiply-accumulates": [row["macs"] for row in analysis],
        "receptive field": pd.array([row["rf"] for row in analysis], dtype="Int64"),
        "jump": pd.array([row["jump"] for row in analysis], dtype="Int64"),
    })
    st.dataframe(table, hide_index=True, key="concepts_stack_table")
    st.caption("Receptive field and jump are in input pixels; dense units see the whole input "
               "(empty cells). Parameter totals equal Keras `count_params()` for the same stack "
               "(LeNet-5's S2/S4 here are Keras `AveragePooling2D`, without the paper's trainable "
               "coefficients; C3 is " + ("partially connected, as in the paper)." if partial
                                         else "fully connected, as in Keras re-implementations)."))
    if preset == "LeNet-5":
        c3_table_part()
    return layers, analysis, input_shape


@st.cache_data(show_spinner="Building C3 both ways with Keras…")
def _keras_c3_counts() -> dict:
    """Trainable parameters of C3 built with real Keras layers, full and partial."""
    import keras

    from core.concepts.partial_conv import PartialConv2D

    partial = PartialConv2D(concepts.LENET5_C3_CONNECTIONS, 5, name="C3_partial")
    full = keras.layers.Conv2D(16, 5, name="C3_full")
    for layer in (partial, full):
        layer.build((None, 14, 14, concepts.LENET5_C3_INPUTS))
    return {"full": full.count_params(), "partial": partial.count_params()}


def c3_table_part() -> None:
    """Table I as a picture, and C3's parameters with full and partial connection side by side."""
    st.subheader("C3's partial connection table")
    counts = concepts.connection_parameter_counts()
    st.markdown(
        "LeNet-5's C3 does not connect every S2 map to every C3 map: the first six C3 maps read "
        "3 neighbouring S2 maps, the next nine read 4, and the last reads all 6. LeCun et al. "
        "(1998) keep the number of connections in bounds this way and *break the symmetry*: "
        "maps that see different inputs are forced to learn different features.")
    st.plotly_chart(charts.connection_table_figure(concepts.connection_matrix()),
                    key="concepts_c3_table_figure")
    columns = st.columns(2)
    columns[0].metric("C3 fully connected", f"{counts['full_params']:,} parameters",
                      help=f"{counts['full_connections']} kernels of 5×5 + 16 biases")
    columns[1].metric("C3 with table I", f"{counts['partial_params']:,} parameters",
                      delta=f"{counts['partial_params'] - counts['full_params']:,}",
                      delta_color="off",
                      help=f"{counts['partial_connections']} kernels of 5×5 + 16 biases")
    st.latex(r"\underbrace{6 \cdot 16 \cdot 25 + 16}_{\text{full}} = "
             f"{counts['full_params']:,}".replace(",", "{,}") +
             r"\qquad \underbrace{60 \cdot 25 + 16}_{\text{table I}} = "
             f"{counts['partial_params']:,}".replace(",", "{,}"))
    if st.button("Check with Keras", key="concepts_c3_keras_check", icon=":material/fact_check:"):
        keras_counts = _keras_c3_counts()
        matches = (keras_counts["full"], keras_counts["partial"]) == (counts["full_params"],
                                                                      counts["partial_params"])
        message = (f"Keras `count_params()`: `Conv2D(16, 5)` {keras_counts['full']:,}, "
                   f"`PartialConv2D` with table I {keras_counts['partial']:,}.")
        (st.success if matches else st.error)(message)


# --------------------------------------------------------------------------------------------
# c. Receptive field


def _centre_unit(row: dict) -> None:
    st.session_state["concepts_rf_row"] = (row["output_shape"][0] - 1) // 2
    st.session_state["concepts_rf_col"] = (row["output_shape"][1] - 1) // 2


def _centre_unit_of_layer(spatial: list[dict]) -> None:
    """Layer switch: move to that layer's centre unit."""
    _centre_unit(next(row for row in spatial if row["name"] == st.session_state["concepts_rf_layer"]))


@st.cache_data(show_spinner=False)
def _preset_analysis(name: str) -> list[dict]:
    layers, input_shape = concepts.preset_stack(name)
    return concepts.analyze_stack(layers, input_shape)


@st.cache_data(show_spinner=False)
def _sample_image(height: int, width: int) -> np.ndarray:
    return concepts.sample_image(height, width)


def receptive_field_section(analysis: list | None, input_shape: tuple) -> None:
    if analysis is None:
        st.info("Fix the layer stack first: the receptive-field view uses it.")
        return
    spatial = [row for row in analysis if row["rf"] is not None]
    if not spatial:
        st.info("The stack has no conv or pooling layer.")
        return
    names = [row["name"] for row in spatial]
    if st.session_state["concepts_rf_layer"] not in names:
        # start in the middle of the stack, on the centre unit: its field is neither tiny nor all
        st.session_state["concepts_rf_layer"] = names[len(names) // 2]
        _centre_unit(spatial[len(names) // 2])
    columns = st.columns(3)
    columns[0].selectbox("Layer", names, key="concepts_rf_layer", on_change=_centre_unit_of_layer,
                         args=(spatial,))
    chosen = spatial[names.index(st.session_state["concepts_rf_layer"])]
    out_height, out_width = chosen["output_shape"][:2]
    _clamp("concepts_rf_row", 0, out_height - 1)
    _clamp("concepts_rf_col", 0, out_width - 1)
    columns[1].number_input("Unit row", min_value=0, max_value=out_height - 1, step=1,
                            key="concepts_rf_row", help=f"0 to {out_height - 1}")
    columns[2].number_input("Unit column", min_value=0, max_value=out_width - 1, step=1,
                            key="concepts_rf_col", help=f"0 to {out_width - 1}")
    row_window = concepts.receptive_window(chosen, st.session_state["concepts_rf_row"])
    column_window = concepts.receptive_window(chosen, st.session_state["concepts_rf_col"])
    metric_columns = st.columns(3)
    metric_columns[0].metric("Receptive field", f"{chosen['rf']}×{chosen['rf']}")
    metric_columns[1].metric("Jump", chosen["jump"])
    metric_columns[2].metric("Input rows × columns seen",
                             f"{row_window[0]}..{row_window[1]} × {column_window[0]}..{column_window[1]}")
    image = _sample_image(input_shape[0], input_shape[1])
    st.plotly_chart(
        charts.receptive_field_figure(
            image, row_window, column_window,
            f"{chosen['name']} unit ({st.session_state['concepts_rf_row']}, "
            f"{st.session_state['concepts_rf_col']}) sees these input pixels"),
        key="concepts_rf_figure",
    )
    st.caption("Dashed: the part of the receptive field that lies in the zero-padding. Pixel i "
               "spans [i, i+1), so the input's first centre is 0.5 (`start` convention).")
    series = {name: _preset_analysis(name) for name in concepts.PRESET_NAMES}
    if not any(analysis == rows for rows in series.values()):
        series["current table"] = analysis
    st.plotly_chart(charts.receptive_field_depth_figure(series), key="concepts_rf_depth_figure")


# --------------------------------------------------------------------------------------------
# d. Convolution playground


def _playground_image() -> np.ndarray | None:
    st.radio("Image", ("sample", "upload"), key="concepts_image_source", horizontal=True,
             format_func=lambda source: "Bundled sample sign" if source == "sample" else "Upload")
    if st.session_state["concepts_image_source"] == "sample":
        return _sample_image(concepts.SAMPLE_IMAGE_SIZE, concepts.SAMPLE_IMAGE_SIZE)
    upload = st.file_uploader("Picture", type=["png", "jpg", "jpeg", "bmp", "webp"],
                              key="concepts_upload")
    if upload is None:
        st.info("Choose a picture; it is shrunk to at most "
                f"{concepts.MAX_PLAYGROUND_SIDE} pixels a side and converted to grey.")
        return None
    try:
        return concepts.image_from_bytes(upload.getvalue())
    except ValueError as error:
        st.error(str(error))
        return None


def _playground_kernel() -> np.ndarray | None:
    name = st.session_state["concepts_kernel_name"]
    if name != "custom":
        return concepts.kernel_weights(name)
    size = st.session_state["concepts_custom_size"]
    identity = np.zeros((size, size))
    identity[size // 2, size // 2] = 1.0
    edited = st.data_editor(
        pd.DataFrame(identity, columns=[f"c{index}" for index in range(size)]),
        key=f"concepts_custom_kernel_{size}",
        hide_index=True,
    )
    try:
        return concepts.kernel_weights("custom", edited.to_numpy(dtype=np.float64))
    except ValueError as error:
        st.error(str(error))
        return None


def playground_section() -> None:
    image = _playground_image()
    columns = st.columns(4)
    columns[0].selectbox("Kernel", KERNEL_CHOICES, key="concepts_kernel_name")
    if st.session_state["concepts_kernel_name"] == "custom":
        columns[1].radio("Custom size", concepts.CUSTOM_KERNEL_SIZES, key="concepts_custom_size",
                         horizontal=True, format_func=lambda size: f"{size}×{size}")
    columns[2].number_input("Stride", min_value=1, max_value=8, step=1, key="concepts_play_stride")
    columns[3].selectbox("Padding", PLAYGROUND_PADDINGS, key="concepts_play_padding_mode")
    if st.session_state["concepts_play_padding_mode"] == PLAYGROUND_PADDINGS[0]:
        columns[3].number_input("P", min_value=0, max_value=8, step=1, key="concepts_play_padding")
    kernel = _playground_kernel()
    if image is None or kernel is None:
        return
    grey = concepts.to_grayscale(image)
    stride = st.session_state["concepts_play_stride"]
    padding = ("same" if st.session_state["concepts_play_padding_mode"] == PLAYGROUND_PADDINGS[1]
               else st.session_state["concepts_play_padding"])
    try:
        top, bottom = concepts.keras_padding_amounts(grey.shape[0], kernel.shape[0], stride, padding)
        left, right = concepts.keras_padding_amounts(grey.shape[1], kernel.shape[0], stride, padding)
        feature_map = concepts.convolve2d(grey, kernel, stride, padding)
    except ValueError as error:
        st.error(str(error))
        return
    padded = np.pad(grey, ((top, bottom), (left, right)))
    st.metric("Feature map", f"{feature_map.shape[0]}×{feature_map.shape[1]}",
              help="Cross-correlation, as Conv2D computes it (no kernel flip, no bias).")
    figure_columns = st.columns(2)
    figure_columns[0].plotly_chart(charts.heatmap_figure(grey, "Input (grey)"),
                                   key="concepts_input_figure")
    figure_columns[1].plotly_chart(charts.padded_input_figure(padded, (top, left), grey.shape),
                                   key="concepts_padded_figure")
    figure_columns = st.columns(2)
    figure_columns[0].plotly_chart(charts.heatmap_figure(kernel, "Kernel", charts.FEATURE_COLORSCALE,
                                                         centred=True), key="concepts_kernel_figure")
    figure_columns[1].plotly_chart(charts.heatmap_figure(feature_map, "Feature map",
                                                         charts.FEATURE_COLORSCALE, centred=True),
                                   key="concepts_feature_figure")

    st.markdown("**Max against average pooling of the feature map**")
    pool_columns = st.columns(2)
    pool_columns[0].number_input("Pool size", min_value=1, max_value=8, step=1,
                                 key="concepts_play_pool_size")
    pool_columns[1].number_input("Pool stride", min_value=1, max_value=8, step=1,
                                 key="concepts_play_pool_stride")
    pool_size = st.session_state["concepts_play_pool_size"]
    pool_stride = st.session_state["concepts_play_pool_stride"]
    try:
        max_pooled = concepts.pool2d(feature_map, pool_size, pool_stride, "max")
        average_pooled = concepts.pool2d(feature_map, pool_size, pool_stride, "average")
    except ValueError as error:
        st.error(str(error))
        return
    st.metric("Pooled map", f"{max_pooled.shape[0]}×{max_pooled.shape[1]}")
    st.plotly_chart(charts.pooling_figure(max_pooled, average_pooled), key="concepts_pool_figure")


# --------------------------------------------------------------------------------------------
# e. Strided convolution instead of pooling


def strided_section() -> None:
    """Pooling against a strided convolution: output size, parameters, receptive field."""
    st.markdown(
        "Springenberg et al. (2015) remove every max-pooling layer from a CNN and lose no "
        "accuracy on CIFAR-10. Either the convolution *before* the pooling takes the pooling's "
        "stride (**Strided-CNN**), or a convolution with the pooling's window and stride takes "
        "its place (**All-CNN**): downsampling becomes a learnt layer. Below, one block of their "
        "model C: two convolutions, then pooling, written three ways.")
    columns = st.columns(6)
    columns[0].number_input("Input side", min_value=4, max_value=512, step=1, key="concepts_strided_side")
    columns[1].number_input("Input channels", min_value=1, max_value=512, step=1,
                            key="concepts_strided_channels")
    columns[2].number_input("Filters", min_value=1, max_value=1024, step=1, key="concepts_strided_filters")
    columns[3].number_input("Conv kernel", min_value=1, max_value=11, step=1, key="concepts_strided_kernel")
    columns[4].number_input("Pool window", min_value=1, max_value=8, step=1,
                            key="concepts_strided_pool_size")
    columns[5].number_input("Pool stride", min_value=1, max_value=8, step=1,
                            key="concepts_strided_pool_stride")
    state = st.session_state
    side = state["concepts_strided_side"]
    try:
        rows = concepts.compare_pooling_variants(
            (side, side, state["concepts_strided_channels"]), filters=state["concepts_strided_filters"],
            kernel=state["concepts_strided_kernel"], pool_size=state["concepts_strided_pool_size"],
            pool_stride=state["concepts_strided_pool_stride"])
    except ValueError as error:
        st.error(str(error))
        return
    table = pd.DataFrame({
        "variant": [row["variant"] for row in rows],
        "layers": [" → ".join(f"{layer['name']} {layer['kernel']}×{layer['kernel']}/{layer['stride']}"
                              for layer in row["layers"]) for row in rows],
        "output size": [_shape_text(row["output_shape"]) for row in rows],
        "parameters (block)": [row["params"] for row in rows],
        "parameters added": [row["replacement_params"] for row in rows],
        "multiply-accumulates": [row["macs"] for row in rows],
        "receptive field": [row["rf"] for row in rows],
        "jump": [row["jump"] for row in rows],
    })
    st.dataframe(table, hide_index=True, key="concepts_strided_table")
    pooling, all_conv, strided_previous = rows
    st.markdown(
        f"Replacing the pooling by a convolution keeps the output size "
        f"({_shape_text(all_conv['output_shape'])}) and the receptive field ({all_conv['rf']} pixels) "
        f"and adds **{all_conv['replacement_params']:,}** parameters. Striding the previous "
        f"convolution instead adds none and needs the fewest multiply-accumulates, but its "
        f"receptive field shrinks to {strided_previous['rf']} pixels (from {pooling['rf']}).")
    st.caption(f"Source: {concepts.SPRINGENBERG_2015} Sizes, parameters and receptive fields are "
               "checked against the same blocks built with Keras layers in the tests. Paddings: "
               "(kernel − 1)/2 for every window, so odd windows with stride 2 halve the side.")
