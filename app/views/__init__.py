"""The Streamlit lab's pages, one module each (registered in `app/lab_pages.py`)."""
