"""Transfer Learning Lab core: plain Python (no Streamlit), shared by the pages and the CLIs."""
