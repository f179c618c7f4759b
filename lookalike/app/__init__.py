"""The Gradio app: the service it calls, its components, the page layout and the shopper controls."""
