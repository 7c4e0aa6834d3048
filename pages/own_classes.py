"""Your own classes: collect webcam snapshots or uploads per class, train in seconds, test live."""

import streamlit as st

from ui import common
from ui import own_classes as view

common.page_header(
    "Your own classes",
    "Teach the computer **your** objects, as Teachable Machine does: add a class per object, take "
    "webcam snapshots or upload pictures of each (5 or more, about 20 is plenty), press **Train**. "
    "A MobileNetV2 that learnt ImageNet's 1,000 classes provides the features; only a small head "
    "is trained on your pictures, so it takes seconds, not hours. That is transfer learning.",
)
collection = view.init_state()
view.show_message()
busy = view.active_run_id() is not None

st.subheader("1. Classes and pictures")
for own_class in list(collection):
    view.class_card(collection, own_class, busy)
view.add_class_form(collection)

st.subheader("2. Train")
view.train_panel(collection, busy)
record = view.run_panel()

if record is not None:
    st.subheader("3. Test it")
    view.test_panel(record)
