from credit_app.services import credits


def test_admin_pages_are_staff_only(user_client, client):
    assert user_client.get("/admin/").status_code == 403
    assert client.get("/admin/").status_code == 302


def test_admin_lists_and_searches_users(admin_client, make_user):
    make_user("findme@example.com")
    page = admin_client.get("/admin/", query_string={"q": "FINDME"}).get_data(as_text=True)
    assert "findme@example.com" in page
    none = admin_client.get("/admin/", query_string={"q": "100%_nobody"}).get_data(as_text=True)
    assert "No users match" in none


def test_admin_grants_from_the_user_page(admin_client, admin, user):
    response = admin_client.post(f"/admin/users/{user.id}",
                                 data={"amount": "5", "reason": "Beta tester"})
    assert response.status_code == 302
    assert credits.get_user_credits(user.id).remaining == 11
    page = admin_client.get(f"/admin/users/{user.id}").get_data(as_text=True)
    assert "Beta tester" in page and "11/11" in page


def test_admin_grant_rejects_bad_amounts(admin_client, user):
    for amount in ("0", "-3", "abc", "100001"):
        response = admin_client.post(f"/admin/users/{user.id}",
                                     data={"amount": amount, "reason": "x"})
        assert response.status_code == 422
    assert credits.get_user_credits(user.id).remaining == 6


def test_admin_unknown_user(admin_client):
    assert admin_client.get("/admin/users/99999999").status_code == 404
