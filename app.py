"""The diffusion demo hub (placeholder until the tabs land): `python app.py`."""
import gradio as gr


def build_app() -> gr.Blocks:
    with gr.Blocks(title="Diffusion demo hub") as demo:
        gr.Markdown("# Diffusion demo hub\nTabs arrive with the models.")
    return demo


if __name__ == "__main__":
    build_app().launch()
