def test_landing_for_visitors(client):
    page = client.get("/").get_data(as_text=True)
    assert "6 free credits" in page


def test_dashboard_shows_balance_and_history(user_client):
    user_client.post("/api/user/credits/consume", json={"feature": "interior"})
    page = user_client.get("/dashboard").get_data(as_text=True)
    assert "5/6" in page and "Welcome credits" in page


def test_sidebar_fragment_is_one_template_for_polling(user_client):
    response = user_client.get("/dashboard/credits", headers={"HX-Request": "true"})
    text = response.get_data(as_text=True)
    assert response.status_code == 200 and 'id="sidebar-credits"' in text
    assert "6/6" in text and ">6 of 6 credits remaining</span>" in text
    assert "<html" not in text
    assert "HX-Request" in response.headers["Vary"]
    assert response.headers["Cache-Control"] == "no-store"


def test_pro_users_see_unlimited(app, make_user):
    client = app.test_client(user=make_user(plan="pro"))
    text = client.get("/dashboard/credits").get_data(as_text=True)
    assert "Unlimited" in text and "Upgrade to Pro" not in text


def test_subscription_page_keeps_the_feature(user_client):
    page = user_client.get("/dashboard/subscription?feature=video").get_data(as_text=True)
    assert "Generate a video" in page


def test_html_errors_are_pages(user_client):
    response = user_client.get("/no/such/page")
    assert response.status_code == 404 and "<html" in response.get_data(as_text=True)


def test_api_docs_and_spec_are_public(client):
    assert client.get("/api/docs").status_code == 200


def test_every_response_carries_the_security_headers(client):
    response = client.get("/login")
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "same-origin"
