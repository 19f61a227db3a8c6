from dfjax.configs import get_config
from dfjax.data import DATASETS
from dfjax.models import MODELS
from dfjax.runner.expand import expand
from dfjax.training import RECIPES


def test_paper_and_zoo_configs_name_registered_things():
    for name in ("paper", "zoo"):
        config = get_config(name)
        cells = expand(config)
        assert cells
        for cell in cells:
            assert cell.model.name in MODELS
            assert cell.training.recipe in RECIPES
            assert cell.dataset.name in DATASETS
    paper = get_config("paper")
    assert {m.name for m in paper.models} == {"cnn7", "cnn6", "resnet50", "gan_disc"}
    zoo = get_config("zoo")
    assert {t.recipe for t in zoo.trainings} == {"standard", "pgd_at"}
    assert {m.name for m in zoo.models} >= {"cnn7", "cnn6", "meso4", "mesoinception4",
                                            "resnet18", "resnet50", "gan_disc"}
