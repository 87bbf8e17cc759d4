"""The Gradio demo (`demo/app.py`): handlers apart from the UI, so both are tested.

`handlers` needs no gradio; `ui` imports it when called (pip install -e '.[demo]').
"""
