from alembic.config import Config
from alembic.script import ScriptDirectory

from tests.fixtures.service import Stack


class TestHealth:
    def test_health_reports_the_database(self, stack: Stack) -> None:
        response = stack.public.get("/health")
        assert response.status_code == 200
        assert response.json() == {"status": "ok", "database": "ok"}

    def test_the_database_is_migrated_to_head(self, stack: Stack) -> None:
        head = ScriptDirectory.from_config(Config("alembic.ini")).get_current_head()
        assert stack.rows("SELECT version_num FROM alembic_version") == [{"version_num": head}]
