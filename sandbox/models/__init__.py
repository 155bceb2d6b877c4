"""The networks: the policy and value MLP (``mlp``), the tiny GPT of the language tasks (``gpt``), a population's
stacked MLPs (``stacked``), and their descriptions in saved policies (``spec``). Every dropout layer is
:class:`sandbox.dropout.MaskedDropout`, through the ``Maths`` seam."""
