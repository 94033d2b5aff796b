"""The LeWM Lab apps: the Streamlit lab (`Home.py`, pages in `views/`) and the Gradio demo
(`gradio_app.py`), thin layers over the `lewm` library; `space.py` writes a Hugging Face Space."""
