.PHONY: run test check
# Set up and run the product on embedded defaults at http://127.0.0.1:8000 (demo mode without OPENAI_API_KEY).
run:
	bash scripts/run.sh

# Set up and run the whole test suite on real PostgreSQL and Redis (ARGS="-k name" to filter).
test:
	bash scripts/test.sh $(ARGS)

check:
	.venv/bin/python manage.py makemigrations --check --dry-run
